"""Shared by several methods: the interpolation weight ``eta`` (one name, each method its own default
and help), and the code that reads the fine-tuning fields of ``finetune.FineTuneConfig`` (the loss
options, the one fine-tuning loop, the late-strength hook). Best of N and the restore come from
``selection``, fine-tuning fields from ``finetune``, the sampler's from ``sampling``."""

from __future__ import annotations

from ..config import param


def eta(
    default: float,
    help: str = "interpolation weight: 0 reproduces the input, 1 is the target text (sec. 3.3)",
):
    """The weight of the target text against what was learned from the input (Imagic, PTI,
    null-text, FastEdit): one name, so that sweeps and the demo treat the methods alike."""
    return param(default, help=help, stage="sample", min=-1.0, max=3.0)


def loss_options(config) -> dict:
    """The fitting loss's fields (``loss_weighting``, ``loss_weight_cap``, ``timestep_sampling``)
    as :func:`~imagic_kit.optim.denoising_loss` keywords: declared once above, read once here."""
    return {
        "weighting": config.loss_weighting,
        "weight_cap": config.loss_weight_cap,
        "timesteps": config.timestep_sampling,
    }


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


def train_unet(
    backbone, fit, config, generator, progress, loss_fn, *, stage, full=False, optimizer="adam"
):
    """Fine-tune ``backbone.unet`` with ``loss_fn(step)`` and store the result in ``fit``: one loop,
    a switch of what is trained. A LoRA (``full=False``: the spec from ``lora_rank``,
    ``lora_alpha``, ``lora_targets``; ``fit.lora``) or every weight of the UNet in float32
    (``full=True``; ``fit.unet_state``), ``finetune_steps`` at ``finetune_lr`` with
    ``finetune_schedule`` (``finetune.FineTuneConfig``). The UNet is left as it was."""
    from ..lora import LoraSpec, lora_state_dict, lora_training
    from ..optim import full_training, lr_schedule, optimize

    if full:
        trainable, what, spec = full_training(backbone.unet), "the UNet weights", None
    else:
        spec = LoraSpec(
            rank=config.lora_rank, alpha=config.lora_alpha, target_modules=list(config.lora_targets)
        )
        trainable, what = lora_training(backbone.unet, spec, generator), "the LoRA weights"
    with trainable as params, backbone.finetuning():
        optimize(
            params,
            loss_fn,
            steps=config.finetune_steps,
            lr=config.finetune_lr,
            lr_fn=lr_schedule(config.finetune_schedule, config.finetune_lr, config.finetune_steps),
            optimizer=optimizer,
            progress=progress,
            stage=stage,
            what=what,
        )
        if full:
            fit.unet_state = {
                k: v.detach().to(backbone.dtype).cpu().clone()
                for k, v in backbone.unet.state_dict().items()
            }
        else:
            fit.lora, fit.lora_spec = lora_state_dict(backbone.unet), spec
    return fit
