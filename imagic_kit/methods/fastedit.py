"""FastEdit (Chen, Zhao, Luo, Huang, arXiv 2408.03355): a fast LoRA on an image-conditioned model,
on timesteps chosen from the semantic gap between the image and the target text.

    fit    1. The condition is the input's projected CLIP image feature, as the image-variations
              model takes it (one cross-attention token); no embedding is optimised (sec. 3.1).
           2. The cosine distance between that feature and the target text's projected CLIP text
              feature (the same CLIP) chooses the range of timesteps the fine-tuning samples
              (sec. 3.2, "semantic-aware timestep selection"): a small change keeps structure, so
              the range sits at high timesteps; a large one needs the low ones.
              :func:`semantic_range` is the mapping; ``timesteps=LO-HI`` fixes a range instead.
           3. A LoRA on the UNet learns to reconstruct the input under its own image feature, on
              timesteps of that range (sec. 3.2).
    sample 4. From fresh noise, classifier-free guidance against the all-zeros embedding (as the
              variations pipeline does); the condition is
              eta * text_feature + (1 - eta) * image_feature (sec. 3.3): more eta, more text.

One fit serves every target text that maps to the same timestep range; another text refits, and the
edit says so. The chosen range and the distance go into the recipe.

The paper's values are the ``paper`` preset. The toolkit's choices, one line each, with their
evidence in docs/methods/fastedit.md:
- the mapping from distance to range, which the paper does not publish: :func:`semantic_range`, a
  window of ``range_width`` sliding down the schedule as the distance grows, on a grid so that
  nearby texts share a fit (#timestep-range);
- a LoRA on the ResNet convolutions, where the paper's attention LoRA does not learn where the
  object is (#a-lora-on-the-resnet-convolutions-85-steps-at-2e-3-batch-4);
- DDIM with part of the DDPM noise, best of N, the unedited pixels restored
  (#sampler-and-best-of-8);
- the LoRA weakened for the late sampling steps, as Imagic (#late-lora-strength-07);
- the candidates spread over eta (``eta_spread``) and ranked
  (#eta-08-the-candidates-spread-over-065-095);
- the text feature rescaled to the image feature's norm before the blend, so that eta weighs
  directions rather than magnitudes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..artifacts import Fit
from ..config import checked_by, default, param
from ..errors import ConfigError, ModelNotAvailableError
from ..finetune import FineTuneConfig, LateStrengthConfig
from ..lora import check_targets, lora_applied
from ..optim import denoising_loss
from ..registry import MethodSpec, register_method
from ..sampling import SamplingConfig, sample_with
from ..selection import BestOfNConfig
from ._common import eta, late_strength_hook, loss_options, train_unet

#: The semantic range moves on a grid of this fraction of the schedule, so that texts at nearly the
#: same distance map to the same range and share a fit.
RANGE_GRID = 1 / 20


def parse_range(value: str) -> tuple[float, float] | None:
    """``"LO-HI"`` as (lo, hi), fractions of the schedule; None for ``"semantic"``. Raises
    ValueError with what is wrong."""
    value = str(value).strip()
    if value == "semantic":
        return None
    parts = value.split("-")
    try:
        lo, hi = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None:
        raise ValueError("give semantic or a range LO-HI, e.g. 0-1 or 0.5-1")
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"the range needs 0 <= LO < HI <= 1 (got {lo:g} and {hi:g})")
    return lo, hi


@dataclass
class FastEditConfig(SamplingConfig, BestOfNConfig, FineTuneConfig, LateStrengthConfig):
    timesteps: str = param(
        "semantic",
        help="the fine-tuning's timestep range: semantic (chosen from the CLIP distance between "
        "the image and the target text) or a fixed range LO-HI in fractions of the schedule "
        "(0-1: all of it, 0.5-1: the upper half)",
        stage="fit",
        check=checked_by(parse_range),
    )
    distance_low: float = param(
        1.3,
        help="semantic: at this CLIP cosine distance or less, the range is at the top of the "
        "schedule (structure kept)",
        stage="fit",
        min=0.0,
        max=2.0,
    )
    distance_high: float = param(
        2.0,
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
    finetune_steps: int = default(
        "finetune_steps", 85, help="LoRA fine-tuning steps on the input (the paper's: 50)"
    )
    finetune_lr: float = default(
        "finetune_lr", 2e-3, help="AdamW learning rate of the LoRA (the paper's: 4e-4)"
    )
    finetune_schedule: str = default("finetune_schedule", "constant")
    loss_weighting: str = default("loss_weighting", "eps")
    text_clip: str = param(
        "",
        help="CLIP model (folder or hub id) whose text tower gives the target text's feature; it "
        "must be the CLIP of the model's image encoder; empty = the model's own",
        stage="fit",
    )
    eta: float = eta(
        0.8,
        help="interpolation weight: 0 = the input's image feature, 1 = the target text's feature",
    )
    eta_spread: float = param(
        0.15,
        help="best of N: the candidates' eta spread evenly over [eta - eta_spread, eta + "
        "eta_spread] (0: all at eta), so that the ranking also chooses how far to move",
        stage="sample",
        min=0.0,
        max=1.0,
    )
    finetune_late_strength: float = default("finetune_late_strength", 0.7)
    guidance_scale: float = default("guidance_scale", 3.0)
    ddim_eta: float = default("ddim_eta", 0.5)
    candidates: int = default("candidates", 8)
    restore_unedited: float = default("restore_unedited", 0.12)


def semantic_range(distance: float, config: FastEditConfig) -> tuple[float, float]:
    """The fine-tuning's timestep range, as fractions of the schedule, for a CLIP distance.

    Linear in the distance between ``distance_low`` (range at the top: [1 - w, 1]) and
    ``distance_high`` (at the bottom: [0, w]), w = ``range_width``; both ends are monotone
    non-increasing in the distance, stay within [0, 1], and lie on a grid of :data:`RANGE_GRID`.
    """
    span = max(config.distance_high - config.distance_low, 1e-6)
    s = min(max((distance - config.distance_low) / span, 0.0), 1.0)
    steps = round(1 / RANGE_GRID)
    width = min(max(round(config.range_width * steps), 1), steps)  # in grid steps
    top = 1.0 - s * (1.0 - config.range_width)
    hi = min(max(round(top * steps), width), steps)
    return (hi - width) / steps, hi / steps


def _text_feature(backbone, prompt: str, config: FastEditConfig) -> torch.Tensor:
    """The target text's projected CLIP feature [1, 1, D]."""
    from ..clip_score import clip_features, load_clip

    path = config.text_clip or backbone.clip_path
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
    fixed = parse_range(config.timesteps)
    if fixed is not None:
        return {"timestep_range": list(fixed)}
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
    fit = Fit(tensors={"image_feature": image.cpu()})
    loss = lambda step: denoising_loss(  # noqa: E731
        backbone,
        batch,
        image,
        generator,
        t_low=t_low,
        t_high=t_high,
        **loss_options(config),
    )
    train_unet(backbone, fit, config, generator, progress, loss, stage="finetune-lora",
               optimizer="adamw")  # fmt: skip
    return fit


def sample(backbone, fit: Fit, inputs, config: FastEditConfig, generator, progress) -> torch.Tensor:
    image = fit.tensor("image_feature", backbone.device).float()
    text = text_feature(backbone, inputs.prompt, config, image)
    n = config.num_images_per_prompt
    etas = torch.tensor(
        [candidate_eta(config, inputs.first_candidate + b, inputs.draws) for b in range(n)],
        device=image.device,
    ).view(-1, 1, 1)
    cond = etas * text + (1.0 - etas) * image
    x = backbone.randn(backbone.latent_shape(n), generator)
    with lora_applied(backbone.unet, fit.lora, fit.lora_spec) as set_strength:
        late = late_strength_hook(config, set_strength)
        uncond = torch.zeros_like(cond)
        return sample_with(
            backbone, x, cond, config, generator, progress, uncond=uncond, before_step=late
        )


def candidate_eta(config: FastEditConfig, j: int, draws: int) -> float:
    """The eta of sample ``j`` of ``draws``: evenly over [eta - eta_spread, eta + eta_spread]."""
    if draws <= 1 or config.eta_spread == 0:
        return config.eta
    return config.eta + config.eta_spread * (2 * j / (draws - 1) - 1)


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
        title="FastEdit",
    )
)
