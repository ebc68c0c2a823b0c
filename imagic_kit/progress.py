"""Progress reporting: a tqdm bar in the terminal, and the same events to an optional callback.

``callback(stage, step, total, info)`` is what the demo and scripts hook into; ``stage`` names the
phase ("fit/embedding", "sample", ...), ``step`` counts from 1, ``info`` may hold e.g. the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

Callback = Callable[[str, int, int, dict[str, Any]], None]


class Progress:
    def __init__(
        self, total: int, stage: str, *, enabled: bool = True, callback: Callback | None = None
    ):
        self.total, self.stage, self.callback, self.step = total, stage, callback, 0
        self.bar = (
            tqdm(total=total, desc=stage, leave=False, dynamic_ncols=True) if enabled else None
        )

    def update(self, **info: Any) -> None:
        self.step += 1
        if self.bar is not None:
            if info:
                self.bar.set_postfix(
                    {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in info.items()},
                    refresh=False,
                )
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.stage, self.step, self.total, info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressOptions:
    """What a method receives to report progress: whether bars show and where events go."""

    def __init__(self, enabled: bool = True, callback: Callback | None = None, prefix: str = ""):
        self.enabled, self.callback, self.prefix = enabled, callback, prefix

    def __call__(self, total: int, stage: str) -> Progress:
        name = f"{self.prefix}{stage}" if self.prefix else stage
        return Progress(total, name, enabled=self.enabled, callback=self.callback)

    def sub(self, prefix: str) -> ProgressOptions:
        return ProgressOptions(self.enabled, self.callback, f"{self.prefix}{prefix}/")


SILENT = ProgressOptions(enabled=False)


def silence_library_bars() -> None:
    """Turn off the loading bars of diffusers, transformers and the hub (``--quiet``)."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
