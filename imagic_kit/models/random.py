"""Random-weight Stable-Diffusion-architecture models built from component configs: tiny models
for the tests, and the real architectures for timing without weights.
"""

from __future__ import annotations

from typing import Any

import torch

from ..backbone import Backbone
from ..errors import ConfigError
from .components import from_components


def build_from_config(build: dict[str, Any], model_id: str = "built") -> Backbone:
    """Build a random-weight SD-architecture backbone from component configs (deterministic in ``seed``).

    ``build`` holds ``unet``, ``vae`` and ``scheduler`` configs, and a text conditioner
    (``tokenizer`` + ``text_encoder``), an image conditioner (``image_encoder`` +
    ``feature_extractor``, as SD image variations), or both. ``clip`` (with an image conditioner)
    adds a whole CLIP model whose vision tower is the image encoder and whose text tower is built
    from ``clip.text`` with a vocabulary of ``clip.words``: the model's own CLIP
    (``Backbone.clip_path``, a temporary folder), which FastEdit's text feature and the ranking
    read, as the real model's CLIP ViT-L/14 would be.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    comps: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(build.get("seed", 0)))
        if "tokenizer" in build:
            from transformers import CLIPTextConfig, CLIPTextModel

            from ..tokenizer import build_tokenizer

            tok_cfg = build["tokenizer"]
            tokenizer = build_tokenizer(tok_cfg["words"], tok_cfg["model_max_length"])
            te_kwargs = dict(
                vocab_size=len(tokenizer),
                max_position_embeddings=tok_cfg["model_max_length"],
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            te_kwargs.update(build["text_encoder"])  # e.g. SD's real vocab_size, for timing
            te_cfg = CLIPTextConfig(**te_kwargs)
            comps.update(tokenizer=tokenizer, text_encoder=CLIPTextModel(te_cfg))
        if "image_encoder" in build:
            from transformers import (
                CLIPImageProcessor,
                CLIPVisionConfig,
                CLIPVisionModelWithProjection,
            )

            comps["image_encoder"] = CLIPVisionModelWithProjection(
                CLIPVisionConfig(**build["image_encoder"])
            )
            comps["feature_extractor"] = CLIPImageProcessor(**build["feature_extractor"])
        comps["vae"] = AutoencoderKL(**build["vae"])
        comps["unet"] = UNet2DConditionModel(**build["unet"])
        clip = _build_clip(build, comps) if "clip" in build else None
    comps["scheduler"] = DDIMScheduler(**build.get("scheduler", {}))
    bb = from_components(comps, model_id=model_id)
    if clip is not None:
        bb.resources.append(clip)  # kept alive with the backbone; removed with it
        bb.clip_path = clip.name
    return bb


def _build_clip(build: dict[str, Any], comps: dict[str, Any]):
    """A random CLIP text tower joined to the built image encoder, saved to a temporary folder."""
    import tempfile

    from transformers import CLIPConfig, CLIPModel

    from ..tokenizer import build_tokenizer

    if "image_encoder" not in comps:
        raise ConfigError("a built model's clip needs its image_encoder (the CLIP's vision tower)")
    spec = build["clip"]
    tokenizer = build_tokenizer(spec["words"], 77)
    vision = {k: v for k, v in build["image_encoder"].items() if k != "projection_dim"}
    text = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **spec["text"],
    )
    dim = build["image_encoder"]["projection_dim"]
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim))
    encoder = comps["image_encoder"]
    model.vision_model.load_state_dict(encoder.vision_model.state_dict())
    model.visual_projection.load_state_dict(encoder.visual_projection.state_dict())
    folder = tempfile.TemporaryDirectory(prefix="imagic-kit-clip-")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a model being built, not a download: no bar
    try:
        model.save_pretrained(folder.name)
    finally:
        hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder.name)
    comps["feature_extractor"].save_pretrained(folder.name)
    return folder
