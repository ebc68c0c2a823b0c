"""Config fields shared by several methods (same name, help and range everywhere); each factory
takes the method's default. The sampling and selection fields (best of N, the restore) are
inherited from ``imagic_kit.selection`` instead."""

from __future__ import annotations

from ..config import Stage, param


def num_inference_steps(
    default: int = 50, stage: Stage = "sample", help: str = "DDIM steps when sampling"
):
    return param(default, help=help, stage=stage, min=1, max=1000)


def guidance_scale(default: float = 7.5):
    return param(
        default,
        help="classifier-free guidance scale (1 = no guidance)",
        stage="sample",
        min=1.0,
        max=50.0,
    )


def ddim_eta(default: float = 0.0):
    return param(
        default,
        help="DDIM eta: 0 deterministic, 1 DDPM-like noise at each step",
        stage="sample",
        min=0.0,
        max=1.0,
    )


def eta(
    default: float,
    help: str = "interpolation weight: 0 reproduces the input, 1 is the target text (sec. 3.3)",
):
    """The weight of the target text against what was learned from the input (Imagic, PTI,
    null-text, FastEdit): one name, so that sweeps and the demo treat the methods alike."""
    return param(default, help=help, stage="sample", min=-1.0, max=3.0)


def lora_rank(default: int = 16):
    return param(default, help="LoRA rank", stage="fit", min=1, max=512)


def lora_alpha(default: float = 16.0):
    return param(default, help="LoRA alpha (scale = alpha / rank)", stage="fit", min=0.0)


def lora_targets(default: list[str], help: str):
    return param(list(default), help=help, stage="fit", min=1)


def batch_size(default: int):
    return param(
        default,
        help="noise samples of the input image per optimisation step",
        stage="fit",
        min=1,
        max=64,
    )


def finetune_schedule(default: str = "cosine"):
    from ..optim import SCHEDULES

    return param(
        default,
        help="learning-rate schedule of the fine-tuning: constant, or cosine decay to 0",
        stage="fit",
        choices=list(SCHEDULES),
    )


def loss_weighting(default: str = "v"):
    from ..optim import LOSS_WEIGHTINGS

    return param(
        default,
        help="timestep weighting of the fitting loss: eps (the standard loss), or v / x0 (weigh "
        "noisy timesteps more: the input's layout and smooth texture are kept more precisely)",
        stage="fit",
        choices=list(LOSS_WEIGHTINGS),
    )


def loss_weight_cap(default: float = 20.0):
    return param(
        default,
        help="upper bound of the v / x0 loss weights (relative to eps)",
        stage="fit",
        min=1.0,
    )


def timestep_sampling(default: str = "uniform"):
    from ..optim import TIMESTEP_SAMPLINGS

    return param(
        default,
        help="how the fitting loss draws its timesteps: uniform (the papers'), or importance (in "
        "proportion to the loss weights, spread over the batch: the same objective, less noise)",
        stage="fit",
        choices=list(TIMESTEP_SAMPLINGS),
    )


def loss_options(config) -> dict:
    """The fitting loss's fields (``loss_weighting``, ``loss_weight_cap``, ``timestep_sampling``)
    as :func:`~imagic_kit.optim.denoising_loss` keywords: declared once above, read once here."""
    return {
        "weighting": config.loss_weighting,
        "weight_cap": config.loss_weight_cap,
        "timesteps": config.timestep_sampling,
    }


def finetune_late_strength(default: float = 0.7):
    return param(
        default,
        help="strength of the fine-tuning in the late, low-noise sampling steps (the LoRA's scale, "
        "or the fine-tuned UNet's share of a blend with the pretrained one): 1 = as fitted, as in "
        "the paper; lower lets the pretrained model draw the prompt's details",
        stage="sample",
        min=0.0,
        max=2.0,
    )


def finetune_late_start(default: float = 0.3):
    return param(
        default,
        help="fraction of the sampling steps, from the noisy end, run at full fine-tuning strength "
        "before finetune_late_strength applies",
        stage="sample",
        min=0.0,
        max=1.0,
    )


def late_strength_hook(config, set_strength):
    """``before_step(j)`` for ``ddim_sample``: at step ``finetune_late_start`` of the schedule the
    fine-tuning's strength drops to ``finetune_late_strength`` once, through ``set_strength`` (a
    LoRA's from :func:`~imagic_kit.lora.lora_applied`, or a blend of fine-tuned UNet weights)
    (docs/methods/imagic.md#late-fine-tuning-strength)."""
    late_from = round(config.finetune_late_start * config.num_inference_steps)

    def before_step(j: int) -> None:
        if j == late_from and config.finetune_late_strength != 1.0:
            set_strength(config.finetune_late_strength)

    return before_step


def train_lora(backbone, fit, config, generator, progress, loss_fn, *, stage, optimizer="adam"):
    """Train a LoRA on ``backbone.unet`` with ``loss_fn(step)`` and store it in ``fit`` (FastEdit's
    fine-tuning, DECOR's customisation): the spec from ``lora_rank``/``lora_alpha``/``lora_targets``,
    ``finetune_steps`` at ``finetune_lr`` with ``finetune_schedule``. The UNet is left as it was."""
    from ..lora import LoraSpec, lora_state_dict, lora_training
    from ..optim import lr_schedule, optimize

    spec = LoraSpec(
        rank=config.lora_rank, alpha=config.lora_alpha, target_modules=list(config.lora_targets)
    )
    with lora_training(backbone.unet, spec, generator) as params, backbone.finetuning():
        optimize(
            params,
            loss_fn,
            steps=config.finetune_steps,
            lr=config.finetune_lr,
            lr_fn=lr_schedule(config.finetune_schedule, config.finetune_lr, config.finetune_steps),
            optimizer=optimizer,
            progress=progress,
            stage=stage,
            what="the LoRA weights",
        )
        fit.lora, fit.lora_spec = lora_state_dict(backbone.unet), spec
    return fit
