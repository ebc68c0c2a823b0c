"""Progress reporting: a tqdm bar in the terminal, and the same events to an optional callback.

``callback(stage, step, total, info)`` is what the demo and scripts hook into; ``stage`` names the
phase ("fit/embedding", "sample", ...), ``step`` counts from 1, ``info`` may hold e.g. the loss.
"""

from __future__ import annotations

import contextlib
import os
import warnings
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


#: ``step_end(step, timestep, tensors) -> tensors or None``, called by the sampler after each
#: sampling step (the pipelines' ``callback_on_step_end``); what it returns replaces the tensors.
StepEnd = Callable[[int, int, dict[str, Any]], dict[str, Any] | None]


class ProgressOptions:
    """What a method receives to report progress: whether bars show and where events go, and the
    hook the sampler calls at the end of every sampling step (``step_end``), which reaches the
    sampling loop of every method without their code knowing it."""

    def __init__(
        self,
        enabled: bool = True,
        callback: Callback | None = None,
        prefix: str = "",
        step_end: StepEnd | None = None,
    ):
        self.enabled, self.callback, self.prefix = enabled, callback, prefix
        self.step_end = step_end

    def __call__(self, total: int, stage: str) -> Progress:
        name = f"{self.prefix}{stage}" if self.prefix else stage
        return Progress(total, name, enabled=self.enabled, callback=self.callback)

    def sub(self, prefix: str) -> ProgressOptions:
        return ProgressOptions(
            self.enabled, self.callback, f"{self.prefix}{prefix}/", self.step_end
        )


SILENT = ProgressOptions(enabled=False)


def silence_library_bars() -> None:
    """Turn off the loading bars of diffusers, transformers and the hub (``--quiet``)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


@contextlib.contextmanager
def quiet_loading():
    """Hold back, while a model loads, the library notices that say nothing to a user of this
    toolkit: deprecations of arguments it passes, fallbacks such as a missing torchvision, the
    per-file loading bars. ``IMAGIC_KIT_DEBUG=1`` shows them. Warnings of this toolkit still show."""
    if os.environ.get("IMAGIC_KIT_DEBUG"):
        yield
        return
    from diffusers.utils import logging as dl
    from transformers.utils import logging as tl

    levels = dl.get_verbosity(), tl.get_verbosity()
    bars = dl.is_progress_bar_enabled(), tl.is_progress_bar_enabled()
    dl.set_verbosity_error()
    tl.set_verbosity_error()
    dl.disable_progress_bar()
    tl.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            yield
    finally:
        dl.set_verbosity(levels[0])
        tl.set_verbosity(levels[1])
        with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS may veto the re-enabling
            warnings.simplefilter("ignore")
            for lib, on in zip((dl, tl), bars, strict=True):
                (lib.enable_progress_bar if on else lib.disable_progress_bar)()
