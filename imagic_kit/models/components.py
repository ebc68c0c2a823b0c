"""A backbone from a diffusers pipeline's components, with the DDIM scheduler editing runs with."""

from __future__ import annotations

from typing import Any

from ..backbone import Backbone
from ..errors import ModelNotAvailableError

#: The DDIM settings nearly every editing implementation uses on top of the model's own betas.


EDITING_SCHEDULER = {"clip_sample": False, "set_alpha_to_one": False}


COMPONENTS = (
    "unet",
    "vae",
    "scheduler",
    "tokenizer",
    "text_encoder",
    "image_encoder",
    "feature_extractor",
)


def editing_scheduler(scheduler: Any):
    """The DDIM scheduler editing runs with, made from any scheduler's config (its betas)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config, **EDITING_SCHEDULER)


def from_components(
    components: dict[str, Any], model_id: str = "pipeline", revision: str | None = None
) -> Backbone:
    """A backbone from a diffusers pipeline's components (the scheduler becomes DDIM)."""
    if components.get("unet") is None or components.get("vae") is None:
        raise ModelNotAvailableError(
            f"model {model_id!r} has no UNet or VAE; it is not a Stable-Diffusion-style pipeline"
        )
    sched = editing_scheduler(components["scheduler"])
    kw = {k: components.get(k) for k in COMPONENTS if k != "scheduler"}
    bb = Backbone(scheduler=sched, model_id=str(model_id), revision=revision, **kw)
    if bb.tokenizer is not None:
        from ..tokenizer import unknown_words

        # Small closed-vocabulary models (ours) warn on words they do not know.
        if len(bb.tokenizer) < 5000:
            bb.unknown_words = lambda text, tok=bb.tokenizer: unknown_words(tok, text)
    return bb
