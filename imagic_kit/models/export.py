"""A backbone back to a stock diffusers pipeline (no copies), and saved as one."""

from __future__ import annotations

from pathlib import Path

from ..backbone import Backbone


def to_pipeline(bb: Backbone, kind: str | None = None):
    """The backbone's components as a stock diffusers pipeline (no copies): ``"text"`` gives a
    ``StableDiffusionPipeline``, ``"image"`` a ``StableDiffusionImageVariationPipeline``; by default
    the one the backbone can drive (text when it has a text encoder)."""
    from diffusers import StableDiffusionImageVariationPipeline, StableDiffusionPipeline

    kind = kind or ("text" if bb.text_encoder is not None else "image")
    common = dict(
        vae=bb.vae,
        unet=bb.unet,
        scheduler=bb.scheduler,
        safety_checker=None,
        requires_safety_checker=False,
    )
    if kind == "image":
        return StableDiffusionImageVariationPipeline(
            image_encoder=bb.image_encoder, feature_extractor=bb.feature_extractor, **common
        )
    return StableDiffusionPipeline(
        text_encoder=bb.text_encoder,
        tokenizer=bb.tokenizer,
        feature_extractor=bb.feature_extractor,
        image_encoder=bb.image_encoder,
        **common,
    )


def save_pipeline(bb: Backbone, folder: str | Path, kind: str | None = None) -> Path:
    """Save as a standard diffusers pipeline folder (see :func:`to_pipeline`)."""
    to_pipeline(bb, kind).save_pretrained(str(folder))
    return Path(folder)
