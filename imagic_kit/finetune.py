"""The fine-tuning fields, declared once: a config mixin for the methods that fine-tune the UNet on
their input (Imagic, FastEdit, DECOR), beside ``BestOfNConfig`` and ``RestoreConfig``; and
:class:`LateStrengthConfig`, for the methods that weaken the fine-tuning in the late sampling steps.

A method inherits :class:`FineTuneConfig` and gives a field its own default with
:func:`~imagic_kit.config.default` (``finetune_steps: int = default("finetune_steps", 140)``); the
help, the range and the stage are these. ``methods/_common.py`` holds the code that reads them (the
loss options, the LoRA training loop, the late-strength hook).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import param, shared_config
from .lora import CONV_TARGETS
from .optim import LOSS_WEIGHTINGS, SCHEDULES, TIMESTEP_SAMPLINGS


@shared_config
@dataclass
class FineTuneConfig:
    """Fields of fine-tuning the UNet (a LoRA, or the whole UNet where a method offers it) with the
    denoising loss on the input image(s)."""

    #: A method lists these fields among its own (``config.field_infos``): they are its fit.
    shown_as_own = True

    finetune_steps: int = param(
        100, help="UNet fine-tuning steps on the input", stage="fit", min=0, max=100_000
    )
    finetune_lr: float = param(
        1e-3,
        help="learning rate of the fine-tuning (a LoRA ~1e-4..1e-2, the full UNet ~1e-6)",
        stage="fit",
        min=0.0,
        max=1.0,
    )
    finetune_schedule: str = param(
        "cosine",
        help="learning-rate schedule of the fine-tuning: constant, or cosine decay to 0",
        stage="fit",
        choices=list(SCHEDULES),
    )
    lora_rank: int = param(16, help="LoRA rank", stage="fit", min=1, max=512)
    lora_alpha: float = param(16.0, help="LoRA alpha (scale = alpha / rank)", stage="fit", min=0.0)
    lora_targets: list = param(
        list(CONV_TARGETS),
        help="UNet modules that get a LoRA (comma list; conv1,conv2 = the ResNet convolutions; "
        "to_q,to_k,to_v,to_out.0 = the attention projections, the usual SD LoRA)",
        stage="fit",
        min=1,
    )
    loss_weighting: str = param(
        "v",
        help="timestep weighting of the fitting loss: eps (the standard loss), or v / x0 (weigh "
        "noisy timesteps more: the input's layout and smooth texture are kept more precisely)",
        stage="fit",
        choices=list(LOSS_WEIGHTINGS),
    )
    loss_weight_cap: float = param(
        20.0, help="upper bound of the v / x0 loss weights (relative to eps)", stage="fit", min=1.0
    )
    timestep_sampling: str = param(
        "uniform",
        help="how the fitting loss draws its timesteps: uniform (the papers'), or importance (in "
        "proportion to the loss weights, spread over the batch: the same objective, less noise)",
        stage="fit",
        choices=list(TIMESTEP_SAMPLINGS),
    )
    batch_size: int = param(
        4,
        help="noise samples of the input image per optimisation step",
        stage="fit",
        min=1,
        max=64,
    )


@shared_config
@dataclass
class LateStrengthConfig:
    """Fields of weakening a fitted fine-tuning for the late sampling steps (Imagic, FastEdit)."""

    shown_as_own = True

    finetune_late_strength: float = param(
        0.7,
        help="strength of the fine-tuning in the late, low-noise sampling steps (the LoRA's scale, "
        "or the fine-tuned UNet's share of a blend with the pretrained one): 1 = as fitted, as in "
        "the paper; lower lets the pretrained model draw the prompt's details",
        stage="sample",
        min=0.0,
        max=2.0,
    )
    finetune_late_start: float = param(
        0.3,
        help="fraction of the sampling steps, from the noisy end, run at full fine-tuning strength "
        "before finetune_late_strength applies",
        stage="sample",
        min=0.0,
        max=1.0,
    )
