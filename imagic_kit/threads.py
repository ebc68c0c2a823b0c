"""CPU thread policy.

On small machines the biggest avoidable slow-down is oversubscription: two torch processes
that each use every core fight over them and both run several times slower (docs/benchmarks.md,
"CPU threads"; ``scripts/bench_threads.py`` measures it). The policy, applied once at every entry
point (CLI, scripts, tests):

- ``IMAGIC_KIT_NUM_THREADS`` wins when set.
- Otherwise each process takes ``cores // local processes``, where the local process count is
  read from ``LOCAL_WORLD_SIZE`` (set by ``accelerate launch`` and ``torchrun``), at least 1.
- Inter-op threads are set to 1: the models here run one op at a time.

GPU runs are unaffected apart from data loading, which this toolkit does not parallelise.
"""

from __future__ import annotations

import os

_configured: int | None = None


def default_num_threads() -> int:
    env = os.environ.get("IMAGIC_KIT_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(
                f"IMAGIC_KIT_NUM_THREADS={env!r} is not an integer: set it to a thread count like 2"
            ) from None
        return max(1, n)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local))


def configure_threads(num_threads: int | None = None, what: str = "threads") -> int:
    """Set torch's intra-op threads once per process; returns the count in force. A count outside
    1 .. 4 x cores is refused, named as ``what`` (the CLI's "--threads")."""
    global _configured
    import torch

    if num_threads is not None:
        from .errors import ConfigError

        most = 4 * (os.cpu_count() or 1)
        if isinstance(num_threads, bool) or not 1 <= num_threads <= most:
            raise ConfigError(
                f"{what} {num_threads!r}: give 1 to {most} (this machine has {os.cpu_count()} "
                "cores; more threads than cores only slow torch down), or leave it out"
            )
    n = num_threads or default_num_threads()
    if _configured != n:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # can only be set before the first parallel op; harmless if already running
        _configured = n
    return n
