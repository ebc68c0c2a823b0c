"""Peak memory of a piece of work: the CUDA allocator's peak on a GPU, the process's peak RSS
growth on the CPU."""

from __future__ import annotations

import os
import resource
import sys
import threading

import torch


class PeakMemory:
    """Peak memory of what runs inside the ``with`` block, in MB.

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset. CPU: the process's resident set size,
    sampled every 10 ms by a thread (from /proc; elsewhere the process's lifetime peak).
    """

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return None

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss_mb() or 0.0)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._rss_mb() is not None:
            self.peak = self._rss_mb() or 0.0
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss_mb() or 0.0)
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak = rss / (2**20 if sys.platform == "darwin" else 2**10)
