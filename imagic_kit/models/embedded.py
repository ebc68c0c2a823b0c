"""The embedded model, tiny-shapes: its folders inside the package, its loader and its image
variations pipeline.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..backbone import Backbone
from ..errors import ModelNotAvailableError
from .hub import load_pretrained

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded"


def embedded_path(name: str, part: str = "text2img") -> Path:
    """Folder of an embedded model's part: ``text2img`` (a StableDiffusionPipeline folder),
    ``variations`` (the image encoder and feature extractor of a
    StableDiffusionImageVariationPipeline, whose UNet, VAE and scheduler are text2img's: see
    :func:`variations_pipeline`) or ``clip`` (CLIPModel)."""
    return EMBEDDED_DIR / name / part


def variations_pipeline(name: str = "tiny-shapes", dtype: torch.dtype = torch.float32):
    """The embedded model as a stock ``StableDiffusionImageVariationPipeline``: the variations
    folder's image encoder and feature extractor with the text2img UNet, VAE and scheduler (one
    UNet is trained on both conditionings, so the package ships it once)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImageVariationPipeline,
        UNet2DConditionModel,
    )

    text2img, variations = embedded_path(name), embedded_path(name, "variations")
    if not (text2img / "unet").is_dir() or not (variations / "image_encoder").is_dir():
        raise ModelNotAvailableError(
            f"the embedded model {name!r} has no image-variations parts in this install "
            f"({variations.parent}); reinstall imagic-kit"
        )
    return StableDiffusionImageVariationPipeline.from_pretrained(
        str(variations),
        unet=UNet2DConditionModel.from_pretrained(text2img / "unet", torch_dtype=dtype),
        vae=AutoencoderKL.from_pretrained(text2img / "vae", torch_dtype=dtype),
        scheduler=DDIMScheduler.from_pretrained(text2img / "scheduler"),
        safety_checker=None,
        requires_safety_checker=False,
        torch_dtype=dtype,
    )


def load_embedded(name: str, dtype: torch.dtype = torch.float32) -> Backbone:
    """The embedded model: text-to-image components plus the variations model's image encoder."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    text2img, variations = embedded_path(name), embedded_path(name, "variations")
    if (
        not (text2img / "model_index.json").is_file()
        or not (variations / "model_index.json").is_file()
    ):
        raise ModelNotAvailableError(
            f"the embedded model {name!r} is not in this install ({text2img.parent}); "
            "reinstall imagic-kit, or train it with `python scripts/train_tiny_shapes.py all`"
        )
    bb = load_pretrained(str(text2img), revision=None, local_files_only=True, dtype=dtype)
    bb.image_encoder = CLIPVisionModelWithProjection.from_pretrained(variations / "image_encoder")
    bb.feature_extractor = CLIPImageProcessor.from_pretrained(variations / "feature_extractor")
    bb.model_id = name
    bb.clip_path = str(embedded_path(name, "clip"))
    from ..shapes.model import describe  # all it knows: the world it was trained on

    describe(bb)
    return bb
