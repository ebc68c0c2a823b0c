"""What a pipeline call returns, and its image conversions (``output_type``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput
from PIL import Image

from ..artifacts import Fit
from ..errors import ConfigError
from ..request import EditResult

OUTPUT_TYPES = ("pil", "np", "pt")
#: Tensors a ``callback_on_step_end`` can ask for and return.
STEP_END_TENSORS = ("latents",)


@dataclass
class EditPipelineOutput(BaseOutput):
    """What a pipeline call returns.

    images: the edited image(s): PIL images, or a float array [N, H, W, 3] (``np``) or tensor
        [N, 3, H, W] (``pt``) in [0, 1].
    fit: what the method learned from the input (pass it back as ``fit=`` to sample again).
    recipe: everything that reproduces the edit (written into saved PNGs).
    timings: seconds: ``fit_s`` (0 when the fit was reused), ``sample_s``, ``rank_s``.
    fit_reused: whether the fit was given or kept from an earlier call instead of made.
    seed: the seed the images were drawn with.
    candidates / ranking: with best of N, every image drawn and their ranking.
    """

    images: list[Image.Image] | np.ndarray | torch.Tensor
    fit: Fit
    recipe: dict[str, Any]
    timings: dict[str, float]
    fit_reused: bool
    seed: int
    candidates: list[Image.Image] | None = None
    ranking: Any = None

    def save(self, path: str | os.PathLike) -> list[Path]:
        """Write the image(s) as PNG with the recipe (PIL output only)."""
        if not isinstance(self.images, list):
            raise ConfigError("save() writes PIL images: call the pipeline with output_type='pil'")
        return EditResult(self.images, self.fit, None, self.seed, self.timings, self.recipe).save(
            path
        )


def convert(images: list[Image.Image], output_type: str) -> Any:
    if output_type == "pil":
        return images
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    if output_type == "np":
        return arr
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
