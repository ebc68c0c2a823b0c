"""Imagic (Kawar et al., CVPR 2023, arXiv 2210.09276): text-embedding optimisation, fine-tuning,
interpolation.

    fit    1. e_tgt = text-encoder output of the target prompt (the whole token sequence, sec. 3.1).
              Optimise a copy e_opt with the denoising loss on the input image, model frozen,
              uniform timesteps, fresh noise each step (sec. 3.1, "text embedding optimization").
           2. Freeze e_opt; fine-tune the UNet on it with the same loss (sec. 3.2, "model
              fine-tuning"): a LoRA (on the ResNet convs by default) or the full UNet.
    sample 3. From fresh noise, classifier-free guidance against the empty prompt, condition
              e = eta * e_tgt + (1 - eta) * e_opt (sec. 3.3, "text embedding interpolation").
              eta = 0 reproduces the input, eta = 1 is the plain target text.

Notation: ``e_tgt``, ``e_opt`` and ``eta`` are the paper's e_tgt, ê_opt and η.

Presets (``configs/methods/imagic/``): ``paper`` is the paper's Stable Diffusion recipe (full
fine-tuning, one sample, none of the toolkit's additions); the others trade time for success
(docs/methods/imagic.md, "Defaults and presets").

The toolkit's choices, one line each, with their evidence in docs/methods/imagic.md:
- a LoRA on the ResNet convolutions, not the attention projections (#lora-on-the-resnet-convolutions);
- several noisy copies of the input per step, few steps (#batch-8-few-steps);
- the loss weighted like a v-prediction loss, capped (#loss-weighting), with timesteps drawn in
  proportion to those weights (#importance-sampled-timesteps);
- guidance below SD's usual 7.5 (#guidance-5) and DDIM with part of the DDPM noise
  (#sampler-ddim_eta-05);
- the interpolation weight eta (#interpolation-weight-eta-10);
- the fine-tuning weakened for the late sampling steps (#late-fine-tuning-strength);
- best of N by CLIP score, outlines and fidelity (``selection.py``, ``ranking.py``;
  #best-of-n-and-the-ranking) and the unedited pixels restored (``restore.py``;
  #restoring-unedited-pixels);
- DECOR's projection as an option (``decor_strength``, off by default; ``projection.py``;
  docs/methods/decor.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .. import projection
from ..artifacts import Fit
from ..config import default, param
from ..errors import ArtifactMismatchError
from ..finetune import FineTuneConfig, LateStrengthConfig
from ..lora import check_targets, lora_applied
from ..optim import denoising_loss, optimize
from ..projection import DecorConfig
from ..registry import MethodSpec, register_method
from ..sampling import SamplingConfig, sample_with
from ..selection import BestOfNConfig
from ._common import eta, late_strength_hook, loss_options, train_unet


@dataclass
class ImagicConfig(SamplingConfig, BestOfNConfig, FineTuneConfig, LateStrengthConfig, DecorConfig):
    embedding_steps: int = param(
        60, help="steps of text-embedding optimisation (sec. 3.1)", stage="fit", min=0, max=100_000
    )
    embedding_lr: float = param(
        1e-2, help="Adam learning rate for the embedding", stage="fit", min=0.0, max=1.0
    )
    finetune: str = param(
        "lora",
        help="fine-tune the UNet with a LoRA, fully, or not at all",
        stage="fit",
        choices=["lora", "full", "none"],
    )
    finetune_steps: int = default(
        "finetune_steps", 140, help="UNet fine-tuning steps on the input (sec. 3.2)"
    )
    finetune_lr: float = default("finetune_lr", 4e-3)
    timestep_sampling: str = default("timestep_sampling", "importance")
    batch_size: int = default("batch_size", 8)
    gradient_checkpointing: bool = param(
        False, help="trade compute for memory on large UNets", stage="fit"
    )
    eta: float = eta(1.0)
    finetune_late_strength: float = default("finetune_late_strength", 0.7)
    num_inference_steps: int = default("num_inference_steps", 35)
    guidance_scale: float = default("guidance_scale", 5.0)
    ddim_eta: float = default("ddim_eta", 0.5)
    candidates: int = default("candidates", 12)
    restore_unedited: float = default("restore_unedited", 0.12)


def fit(backbone, inputs, config: ImagicConfig, generator, progress) -> Fit:
    if config.finetune == "lora":  # before the embedding stage: a bad target must not cost it
        check_targets(backbone.unet, config.lora_targets)
    z0 = backbone.encode_latents(inputs.pixels[:1]).float()
    batch = z0.expand(config.batch_size, -1, -1, -1)
    e_tgt = backbone.encode_prompt(inputs.prompt).float()
    if config.gradient_checkpointing:
        backbone.enable_gradient_checkpointing()

    def loss(cond):
        return denoising_loss(
            backbone,
            batch,
            cond,
            generator,
            **loss_options(config),
        )

    # 1. text-embedding optimisation, model frozen
    e_opt = e_tgt.clone().requires_grad_(True)
    if config.embedding_steps > 0:
        optimize(
            [e_opt],
            lambda step: loss(e_opt),
            steps=config.embedding_steps,
            lr=config.embedding_lr,
            progress=progress,
            stage="embedding",
            what="the text embedding",
        )
    e_opt = e_opt.detach()
    fit = Fit(tensors={"e_tgt": e_tgt.cpu(), "e_opt": e_opt.cpu()})

    # 2. model fine-tuning on e_opt
    if config.finetune == "none" or config.finetune_steps == 0:
        return fit
    loss_fn = lambda step: loss(e_opt)  # noqa: E731
    stage = f"finetune-{config.finetune}"
    return train_unet(
        backbone,
        fit,
        config,
        generator,
        progress,
        loss_fn,
        stage=stage,
        full=config.finetune == "full",
    )


@contextlib.contextmanager
def _weights(unet: torch.nn.Module, state: dict[str, torch.Tensor] | None):
    """Swap in fine-tuned UNet weights for the duration of a ``with`` block; yields
    ``blend(s)``, which sets the weights to pretrained + s * (fine-tuned - pretrained)."""
    if state is None:
        yield lambda s: None
        return
    original = {k: v.detach().cpu().clone() for k, v in unet.state_dict().items()}
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        unet.load_state_dict(original)
        raise ArtifactMismatchError(
            "the saved fine-tuned UNet does not fit this model; refit without --artifacts"
        )

    @torch.no_grad()
    def blend(strength: float) -> None:
        # in place, one tensor at a time on the UNet's device: no second copy of a large UNet
        for k, p in unet.state_dict().items():
            if k in state and p.is_floating_point():
                lo, hi = (t[k].to(p.device, torch.float32) for t in (original, state))
                p.copy_(torch.lerp(lo, hi, strength))

    try:
        yield blend
    finally:
        unet.load_state_dict(original)


def sample(backbone, fit: Fit, inputs, config: ImagicConfig, generator, progress) -> torch.Tensor:
    dev = backbone.device
    e_tgt, e_opt = fit.tensor("e_tgt", dev), fit.tensor("e_opt", dev)
    # DECOR's option: the interpolated embedding projected away from the unwanted words
    cond = projection.projector(backbone, inputs, config)(
        config.eta * e_tgt + (1.0 - config.eta) * e_opt
    )
    n = config.num_images_per_prompt
    x = backbone.randn(backbone.latent_shape(n), generator)
    with (
        lora_applied(backbone.unet, fit.lora, fit.lora_spec) as set_lora_strength,
        _weights(backbone.unet, fit.unet_state) as blend,
    ):
        # the late steps weaken the fine-tuning once: a LoRA is rescaled, a full fine-tune blended
        set_strength = set_lora_strength if fit.lora is not None else blend
        late = late_strength_hook(config, set_strength)
        return sample_with(backbone, x, cond, config, generator, progress, before_step=late)


register_method(
    MethodSpec(
        name="imagic",
        description="Imagic: optimise the text embedding, fine-tune the UNet (LoRA or full), interpolate",
        config_cls=ImagicConfig,
        fit=fit,
        sample=sample,
        fit_depends_on=("prompt",),
        source_prompt="optional",  # only DECOR's option reads it (the words the target drops)
        edit_facts=projection.facts,
        paper="Kawar et al., arXiv 2210.09276",
        main_field="eta",
        title="Imagic",
    )
)
