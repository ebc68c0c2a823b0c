"""FastEdit (Chen, Zhao, Luo, Huang, arXiv 2408.03355): a fast LoRA on an image-conditioned model,
on timesteps chosen from the semantic gap between the image and the target text.

    fit    1. The condition is the input's projected CLIP image feature, as the image-variations
              model takes it (one cross-attention token); no embedding is optimised (sec. 3.1).
           2. The cosine distance between that feature and the target text's projected CLIP text
              feature (the same CLIP) chooses the range of timesteps the fine-tuning samples
              (sec. 3.2, "semantic-aware timestep selection"): a small change keeps structure, so
              the range sits at high timesteps; a large one needs the low ones.
              :func:`semantic_range` is the mapping; ``timesteps=fixed`` uses a configured range.
           3. A LoRA on the UNet's attention projections (rank 16, AdamW 4e-4, 50 steps: the
              paper's values) learns to reconstruct the input under its own image feature, on
              timesteps of that range (sec. 3.2).
    sample 4. From fresh noise, classifier-free guidance against the all-zeros embedding (as the
              variations pipeline does); the condition is
              eta * text_feature + (1 - eta) * image_feature (sec. 3.3): more eta, more text.

One fit serves every target text that maps to the same timestep range; another text refits, and the
edit says so. The chosen range and the distance go into the recipe.

The paper's mapping from distance to range is not public: :func:`semantic_range` is the toolkit's
own (docs/methods/fastedit.md, "The semantic-aware range"), a linear map from the distance between
``distance_low`` and ``distance_high`` to a range of ``range_width`` that slides from the top of
the schedule to its bottom, on a grid of 1/20 of the schedule so that nearby texts share a fit.
The text feature is rescaled to the image feature's norm before interpolating
(docs/methods/fastedit.md, "Feature scale").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..artifacts import Fit
from ..config import param
from ..errors import ConfigError, ModelNotAvailableError
from ..lora import LoraSpec, check_targets, lora_applied, lora_state_dict, lora_training
from ..optim import denoising_loss, optimize
from ..registry import MethodSpec, register_method
from ..sampling import ddim_sample
from ..selection import BestOfNConfig, default
from ._common import (
    batch_size,
    ddim_eta,
    eta,
    guidance_scale,
    lora_alpha,
    lora_rank,
    lora_targets,
    num_inference_steps,
)

ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: The semantic range moves on a grid of this fraction of the schedule, so that texts at nearly the
#: same distance map to the same range and share a fit.
RANGE_GRID = 1 / 20


@dataclass
class FastEditConfig(BestOfNConfig):
    timesteps: str = param(
        "semantic",
        help="how the fine-tuning's timestep range is chosen: semantic (from the CLIP distance "
        "between the image and the target text) or fixed (fixed_low..fixed_high)",
        stage="fit",
        choices=["semantic", "fixed"],
    )
    distance_low: float = param(
        0.4,
        help="semantic: at this CLIP cosine distance or less, the range is at the top of the "
        "schedule (structure kept)",
        stage="fit",
        min=0.0,
        max=2.0,
    )
    distance_high: float = param(
        1.0,
        help="semantic: at this distance or more, the range is at the bottom of the schedule",
        stage="fit",
        min=0.0,
        max=2.0,
    )
    range_width: float = param(
        0.5,
        help="semantic: the range's width, as a fraction of the training timesteps",
        stage="fit",
        min=RANGE_GRID,
        max=1.0,
    )
    fixed_low: float = param(
        0.5,
        help="fixed: the range's low end, fraction of the schedule",
        stage="fit",
        min=0.0,
        max=1.0,
    )
    fixed_high: float = param(
        1.0,
        help="fixed: the range's high end, fraction of the schedule",
        stage="fit",
        min=0.0,
        max=1.0,
    )
    finetune_steps: int = param(
        50, help="LoRA fine-tuning steps (sec. 3.2)", stage="fit", min=0, max=100_000
    )
    finetune_lr: float = param(
        4e-4, help="AdamW learning rate of the LoRA", stage="fit", min=0.0, max=1.0
    )
    lora_rank: int = lora_rank(16)
    lora_alpha: float = lora_alpha(16.0)
    lora_targets: list = lora_targets(
        ATTENTION_TARGETS,
        help="UNet modules that get a LoRA (comma list; the paper's: the attention projections)",
    )
    batch_size: int = batch_size(1)
    text_clip: str = param(
        "",
        help="CLIP model (folder or hub id) whose text tower gives the target text's feature; it "
        "must be the CLIP of the model's image encoder; empty = the model's own",
        stage="fit",
    )
    eta: float = eta(
        0.5,
        help="interpolation weight: 0 = the input's image feature, 1 = the target text's feature",
    )
    guidance_scale: float = guidance_scale(3.0)
    num_inference_steps: int = num_inference_steps(50)
    ddim_eta: float = ddim_eta(0.0)
    candidates: int = default("candidates", 1)


def semantic_range(distance: float, config: FastEditConfig) -> tuple[float, float]:
    """The fine-tuning's timestep range, as fractions of the schedule, for a CLIP distance.

    Linear in the distance between ``distance_low`` (range at the top: [1 - w, 1]) and
    ``distance_high`` (at the bottom: [0, w]), w = ``range_width``; both ends are monotone
    non-increasing in the distance, stay within [0, 1], and lie on a grid of :data:`RANGE_GRID`.
    """
    span = max(config.distance_high - config.distance_low, 1e-6)
    s = min(max((distance - config.distance_low) / span, 0.0), 1.0)
    width = config.range_width
    top = 1.0 - s * (1.0 - width)
    steps = round(1 / RANGE_GRID)
    hi = round(top * steps) / steps
    lo = max(round((top - width) * steps) / steps, 0.0)
    return lo, min(hi, 1.0)


def _text_feature(backbone, prompt: str, config: FastEditConfig) -> torch.Tensor:
    """The target text's projected CLIP feature [1, 1, D]."""
    from ..clip_score import clip_features, load_clip

    path = config.text_clip or backbone.extras.get("clip_path")
    if not path:
        raise ConfigError(
            f"fastedit needs the text tower of the CLIP that {backbone.model_id!r}'s image encoder "
            "comes from; set text_clip to it (for sd-image-variations: openai/clip-vit-large-patch14)"
        )
    try:
        clip = load_clip(path)
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotAvailableError(
            f"the CLIP model {path!r} for fastedit's text feature could not be loaded "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); give text_clip a local "
            "CLIP folder"
        ) from None
    ids = clip.tokenizer([prompt], padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        feat = clip_features(clip.model.get_text_features(input_ids=ids.input_ids))
    return feat.float().unsqueeze(1)


def image_feature(backbone, inputs) -> torch.Tensor:
    """The input's projected CLIP image feature [1, 1, D], float32, on the backbone's device."""
    return backbone.encode_image_embedding(inputs.images[:1]).float()


def text_feature(
    backbone, prompt: str, config: FastEditConfig, image: torch.Tensor
) -> torch.Tensor:
    """The target text's projected CLIP feature [1, 1, D], rescaled to ``image``'s norm."""
    text = _text_feature(backbone, prompt, config).to(image.device)
    if text.shape[-1] != image.shape[-1]:
        raise ConfigError(
            f"text_clip gives {text.shape[-1]}-d features and the image encoder {image.shape[-1]}-d; "
            "use the CLIP the image encoder comes from"
        )
    return text * (image.norm() / text.norm().clamp(min=1e-8))


def timestep_range(
    backbone, inputs, config: FastEditConfig, image: torch.Tensor | None = None
) -> dict:
    """What a fit depends on besides the image and the fit config: the range (and the distance
    that chose it). An edit whose text maps to the same range reuses a fit. ``image``: the
    input's image feature, when already encoded."""
    if config.timesteps == "fixed":
        if config.fixed_low >= config.fixed_high:
            raise ConfigError(
                f"fixed_low {config.fixed_low} must be below fixed_high {config.fixed_high}"
            )
        return {"timestep_range": [config.fixed_low, config.fixed_high]}
    image = image_feature(backbone, inputs) if image is None else image
    text = text_feature(backbone, inputs.prompt, config, image)
    distance = 1.0 - float(torch.nn.functional.cosine_similarity(image[0], text[0]).item())
    lo, hi = semantic_range(distance, config)
    return {"timestep_range": [lo, hi], "semantic_distance": round(distance, 4)}


def fit(backbone, inputs, config: FastEditConfig, generator, progress) -> Fit:
    check_targets(backbone.unet, config.lora_targets)
    image = image_feature(backbone, inputs)
    lo, hi = timestep_range(backbone, inputs, config, image)["timestep_range"]
    t_total = backbone.num_train_timesteps
    t_low, t_high = int(lo * t_total), max(int(hi * t_total), int(lo * t_total) + 1)
    z0 = backbone.encode_latents(inputs.pixels[:1]).float()
    batch = z0.expand(config.batch_size, -1, -1, -1)
    spec = LoraSpec(
        rank=config.lora_rank, alpha=config.lora_alpha, target_modules=list(config.lora_targets)
    )
    fit = Fit(tensors={"image_feature": image.cpu()})
    with lora_training(backbone.unet, spec, generator) as params, backbone.finetuning():
        optimize(
            params,
            lambda step: denoising_loss(
                backbone, batch, image, generator, t_low=t_low, t_high=t_high
            ),
            steps=config.finetune_steps,
            lr=config.finetune_lr,
            optimizer="adamw",
            progress=progress,
            stage="finetune-lora",
            what="the LoRA weights",
        )
        fit.lora, fit.lora_spec = lora_state_dict(backbone.unet), spec
    return fit


def sample(backbone, fit: Fit, inputs, config: FastEditConfig, generator, progress) -> torch.Tensor:
    image = fit.tensor("image_feature", backbone.device).float()
    text = text_feature(backbone, inputs.prompt, config, image)
    cond = config.eta * text + (1.0 - config.eta) * image
    n = config.num_images_per_prompt
    x = backbone.randn(backbone.latent_shape(n), generator)
    with lora_applied(backbone.unet, fit.lora, fit.lora_spec):
        return ddim_sample(
            backbone,
            x,
            cond,
            uncond=torch.zeros_like(cond),
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            eta=config.ddim_eta,
            generator=generator,
            progress=progress,
        )


register_method(
    MethodSpec(
        name="fastedit",
        description="FastEdit: a LoRA on the image-conditioned model, on timesteps chosen from the "
        "semantic gap; the image feature interpolated with the text's",
        config_cls=FastEditConfig,
        fit=fit,
        sample=sample,
        requires=("image_encoder",),
        edit_facts=timestep_range,
        fit_depends_on=("timestep_range",),
        paper="Chen et al., arXiv 2408.03355",
        main_field="eta",
        models=("tiny-shapes", "sd-image-variations"),
    )
)
