"""Prompt-to-Prompt attention control (Hertz et al., ICLR 2023, arXiv 2208.01626), on diffusers'
attention-processor API (``UNet2DConditionModel.set_attn_processor``).

An edit samples two branches as one batch from the same latent: the source branch (the input's
reconstruction, under the condition it was inverted or tuned with) and the target branch (the
edit). While ``attention_maps.installed`` holds, every attention layer of the UNet hands its
attention probabilities to an ``attention_maps.Controller`` between the softmax and the product
with the values:

- cross-attention: for the first ``cross_replace_steps`` of sampling the target branch's maps are
  the source branch's, token for token where the prompts align (``words.align``: a word swap maps
  every token, a refinement the shared ones; the target's new tokens keep their own maps)
  (sec. 3.2, "word swap", "adding a new phrase");
- reweighting: in those steps the maps of chosen target words are scaled (sec. 3.2, "attention
  re-weighting"; ``reweight="blue:2"``);
- self-attention: for the first ``self_replace_steps`` the target branch takes the source branch's
  self-attention maps in the layers at half the latent's resolution or coarser (the paper's code
  replaces them at 32x32 and below of SD's 64x64 latents): they carry layout and shape;
- local blend: after each step from the first fifth of sampling on, the target branch's latents
  outside a region are the source branch's (sec. 3.2, "local editing"). The region comes from
  ``blend_mask``:

  - ``attention`` (the paper's): the cross-attention of the words that change (or of chosen
    words), in the layers whose maps are nearest 16x16 (SD 1.x's at 512 px, as in the paper),
    summed over heads, layers and the steps so far, max-pooled, upsampled, normalised and
    thresholded;
  - ``difference``: drawn once before sampling, where the model's noise estimates for the noised
    input under the caption and under the target prompt differ (DiffEdit's mask, Couairon et al.,
    arXiv 2210.11427, sec. 3.1; ``regions.difference_region``). It needs no attention layer at the
    right resolution: on a model whose text attention is coarse a word's map covers the whole
    image (docs/methods/attention-control.md). With it the decoded pixels outside the region are
    the input's too (``restore.keep_outside``): blending latents alone does not keep them.

As in the paper's code, only the conditional half of a guided batch is controlled, and the maps
kept for the blend are the ones the model computed, before any replacement. A layer whose maps
are not needed at a step runs PyTorch's fused attention. What is kept between steps is one running
sum [branches, h*w] per resolution for the blend: a few kilobytes; the cost is the attention
probabilities that a controlled layer materialises for the step (docs/methods/attention-control.md).
The UNet's own processors come back after every sampling run, also one that fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .attention_maps import Controller, installed
from .config import checked_by, param, shared_config
from .errors import ConfigError
from .progress import ProgressOptions
from .regions import difference_region
from .sampling import Condition, Sampled, sample_with, schedule
from .words import align, dropped_words, token_ids, word_list, word_positions


def parse_reweight(value: str) -> list[tuple[str, float]]:
    """``"blue:2,circle:0.5"`` as [("blue", 2.0), ("circle", 0.5)]; a ValueError says the fix."""
    out = []
    for item in (p.strip() for p in str(value).split(",")):
        if not item:
            continue
        word, _, factor = item.rpartition(":")
        try:
            scale = float(factor)
        except ValueError:
            scale = math.nan
        if not word.strip() or not math.isfinite(scale):
            raise ValueError(f"reweight takes WORD:FACTOR pairs, e.g. blue:2 (got {item!r})")
        out.append((word.strip().lower(), scale))
    return out


@shared_config
@dataclass
class AttentionControlConfig:
    """Prompt-to-Prompt's fields, the same in every method that offers it. The control is on when
    ``cross_replace_steps`` or ``self_replace_steps`` is above 0; the reweighting and the local
    blend act with it."""

    cross_replace_steps: float = param(
        0.0,
        help="attention control: fraction of the sampling steps, from the noisy end, in which the "
        "edit takes the input's cross-attention maps (its layout of words); 0 with "
        "self_replace_steps 0 = off",
        stage="sample",
        min=0.0,
        max=1.0,
    )
    self_replace_steps: float = param(
        0.0,
        help="attention control: fraction of the sampling steps, from the noisy end, in which the "
        "edit takes the input's self-attention maps (its shapes and layout)",
        stage="sample",
        min=0.0,
        max=1.0,
    )
    reweight: str = param(
        "",
        help="attention control: scale the attention to target words while the cross-attention "
        "is replaced, e.g. blue:2 or blue:2,circle:0.5 (empty = none)",
        stage="sample",
        check=checked_by(parse_reweight),
    )
    blend_words: str = param(
        "auto",
        help="attention control's local blend: off, or the words whose attention marks the "
        "region the edit may change with blend_mask=attention (comma list, or auto: the words "
        "the two prompts do not share); outside the region the input is kept",
        stage="sample",
    )
    blend_mask: str = param(
        "attention",
        help="attention control's local blend: what marks its region: attention (the blend "
        "words' cross-attention, the paper's) or difference (where the model's noise estimates "
        "for the input under the source and the target prompt differ, as DiffEdit does)",
        stage="sample",
        choices=["attention", "difference"],
    )
    blend_noise: float = param(
        0.5,
        help="attention control's local blend with blend_mask=difference: the noise level, as a "
        "fraction of the schedule, at which the two prompts' noise estimates are compared "
        "(DiffEdit's 0.5; higher also marks regions whose colour the prompts set, e.g. a "
        "background)",
        stage="sample",
        min=0.05,
        max=1.0,
    )
    blend_threshold: float = param(
        0.3,
        help="attention control's local blend: the share of the strongest attention (or "
        "difference) from which a latent pixel belongs to the edited region",
        stage="sample",
        min=0.0,
        max=1.0,
    )


def active(config: AttentionControlConfig) -> bool:
    """Whether ``config`` turns the attention control on."""
    return config.cross_replace_steps > 0 or config.self_replace_steps > 0


def blend_kind(config: AttentionControlConfig) -> str:
    """Where the local blend's region comes from: ``off``, ``attention`` or ``difference``."""
    return "off" if config.blend_words.strip().lower() == "off" else config.blend_mask


def changed_words(source: str, target: str) -> list[str]:
    """The words one prompt has and the other does not (the target's first), stop words left out."""
    return dropped_words(target, source) + dropped_words(source, target)


@dataclass(frozen=True)
class Branches:
    """The two sides of an edit: the source branch's condition and the prompt whose tokens it has
    (its layout), the target prompt (the target condition's layout), the words that change (for
    ``blend_words=auto``), and the input's pixels [1, 3, H, W] and caption (for
    ``blend_mask=difference``)."""

    source_cond: Condition
    source_text: str
    target_text: str
    changed: tuple[str, ...]
    pixels: torch.Tensor | None = None
    caption: str | None = None

    @classmethod
    def of(cls, backbone, inputs, source_cond: Condition | None = None, layout: str | None = None):
        """An edit's branches: the source branch under ``source_cond`` (default: the source
        prompt's embedding), whose tokens are ``layout``'s (default: the source prompt's)."""
        src, tgt = inputs.source_prompt or "", inputs.prompt
        if source_cond is None:
            source_cond = backbone.encode_prompt(src)
        changed = tuple(changed_words(src, tgt) if src else ())
        return cls(source_cond, layout or src, tgt, changed, inputs.pixels[:1], src or None)


def _rows(cond: Condition | None, first: Condition | None, n: int) -> Condition | None:
    """A condition with the source row first and ``n`` target rows after it."""
    if cond is None and first is None:
        return None

    def resolve(c, i, t):
        return c(i, t) if callable(c) else c

    def both(i: int, t: int) -> torch.Tensor:
        target = resolve(cond, i, t)
        source = resolve(first, i, t) if first is not None else target[:1]
        target = target.expand(n, -1, -1) if target.shape[0] == 1 else target
        return torch.cat([source[:1].to(target.dtype), target])

    if not callable(cond) and not callable(first):
        return both(0, 0)
    return both


def facts(backbone, inputs, config: AttentionControlConfig) -> dict[str, Any]:
    """The recipe's record of the control (and its checks, before any fit): how the target's
    tokens take the source's maps, and the words of the local blend. Empty when it is off."""
    if not active(config) or not inputs.source_prompt or backbone.tokenizer is None:
        return {}
    branches = Branches(
        None,
        inputs.source_prompt,
        inputs.prompt,
        tuple(changed_words(inputs.source_prompt, inputs.prompt)),
    )
    c = controller_for(backbone, branches, config, 2, 1, (1, 1))
    own = int((c.mapping < 0).sum())
    return {
        "attention_control": {
            "tokens": "word swap" if own == 0 else f"refinement ({own} new tokens)",
            "blend": blend_kind(config),
            "blend_words": list(c.blend_words),
        }
    }


def _blend_tokens(tok, branches: Branches, config, src_ids, tgt_ids):
    """The token positions (source, target) of the attention blend's words, and the words."""
    choice = config.blend_words.strip().lower()
    if blend_kind(config) == "difference" and choice != "auto":
        raise ConfigError(
            f"blend_words={config.blend_words!r} names words, which only blend_mask=attention "
            "reads; set blend_mask=attention, or blend_words=auto"
        )
    if blend_kind(config) != "attention":
        return None, ()
    words = list(branches.changed) if choice == "auto" else word_list(choice)
    source = sorted({p for w in words for p in word_positions(tok, src_ids, w)})
    target = sorted({p for w in words for p in word_positions(tok, tgt_ids, w)})
    if choice != "auto" and not source and not target:
        raise ConfigError(
            f"blend_words={config.blend_words!r}: neither prompt has these words; name words "
            "of the prompts, or set blend_words=auto"
        )
    if not source and not target:
        return None, ()
    return (source or target, target or source), tuple(words)


def controller_for(
    backbone,
    branches: Branches,
    config: AttentionControlConfig,
    rows: int,
    steps: int,
    size,
    region: torch.Tensor | None = None,
) -> Controller:
    """The ``Controller`` of one sampling run; a ConfigError names words the prompts lack."""
    tok, length = backbone.tokenizer, backbone.max_tokens
    if tok is None:
        raise ConfigError(
            "attention control needs a text-conditioned model; set cross_replace_steps=0 and "
            "self_replace_steps=0"
        )
    src_ids = token_ids(tok, branches.source_text, length)
    tgt_ids = token_ids(tok, branches.target_text, length)
    equalizer = torch.ones(len(tgt_ids))
    for word, factor in parse_reweight(config.reweight):
        at = word_positions(tok, tgt_ids, word)
        if not at:
            raise ConfigError(
                f"reweight names {word!r}, which the target prompt does not have; name a word of "
                f"{branches.target_text!r}"
            )
        equalizer[at] = factor
    blend, chosen = _blend_tokens(tok, branches, config, src_ids, tgt_ids)
    return Controller(
        rows=rows,
        steps=steps,
        cross_steps=round(config.cross_replace_steps * steps),
        self_steps=round(config.self_replace_steps * steps),
        mapping=align(src_ids, tgt_ids),
        equalizer=equalizer,
        blend_tokens=blend,
        threshold=config.blend_threshold,
        latent_size=size,
        blend_words=chosen,
        region=region,
    )


def _target_rows_only(progress: ProgressOptions) -> ProgressOptions:
    """``progress`` whose step-end hook sees the target rows of the latents only (what the edit
    returns), and whose changes apply to them."""
    user = progress.step_end
    if user is None:
        return progress

    def step_end(step: int, t: int, tensors: dict) -> dict | None:
        x = tensors["latents"]
        changed = user(step, t, {**tensors, "latents": x[1:]})
        if changed is None or "latents" not in changed:
            return changed
        return {**changed, "latents": torch.cat([x[:1], changed["latents"].to(x)])}

    return ProgressOptions(progress.enabled, progress.callback, progress.prefix, step_end)


def sample_with_control(
    backbone,
    latents: torch.Tensor,
    cond: Condition,
    config,
    generator: torch.Generator | None,
    progress: ProgressOptions,
    branches: Branches | None,
    *,
    uncond: Condition | None = None,
    **options,
) -> torch.Tensor | Sampled:
    """``sampling.sample_with`` for an edit of an inverted input, with the attention control that
    ``config`` (an :class:`AttentionControlConfig` and a ``SamplingConfig``) asks for: the source
    branch (``branches.source_cond``, from ``latents[:1]``) runs in the same batch as the target
    rows (``cond``, from ``latents``) and only the target rows are returned. With the control off,
    or no source branch (``branches`` None), exactly ``sample_with(latents, cond)``."""
    if branches is None or not active(config):
        return sample_with(
            backbone, latents, cond, config, generator, progress, uncond=uncond, **options
        )
    n = latents.shape[0]
    sch = schedule(backbone, config.num_inference_steps, options.get("strength", 1.0))
    region = None
    if blend_kind(config) == "difference" and branches.pixels is not None and branches.caption:
        region = difference_region(
            backbone,
            branches.pixels,
            branches.caption,
            branches.target_text,
            config.blend_threshold,
            config.blend_noise,
        )
    controller = controller_for(
        backbone, branches, config, 1 + n, len(sch.active), tuple(latents.shape[-2:]), region
    )
    user_step: Callable[[int], None] | None = options.pop("before_step", None)

    def before_step(j: int) -> None:
        controller.begin(j)
        if user_step is not None:
            user_step(j)

    with installed(backbone.unet, controller):
        x = sample_with(
            backbone,
            torch.cat([latents[:1], latents]),
            _rows(cond, branches.source_cond, n),
            config,
            generator,
            _target_rows_only(progress),
            uncond=_rows(uncond, None, n) if uncond is not None else None,
            before_step=before_step,
            after_step=controller.blend,
            **options,
        )
    if controller.region is None:
        return x[1:]
    return Sampled(x[1:], controller.region)  # the input's pixels go back outside it
