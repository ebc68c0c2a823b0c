"""DECOR (Jang, Kim, Park, Kim, Lee, Jeong, arXiv 2412.09169): a LoRA customised on reference
images, then generation from a target prompt projected away from what leaks.

    fit    1. A LoRA on the UNet learns the reference image(s) under the source prompt (the
              customisation the paper starts from: the denoising loss, fresh noise and uniform
              timesteps each step, the references cycled through the batch). The fit depends on
              the source prompt, not on the target: one fit serves every target prompt.
    sample 2. The target prompt's text-encoder output X, every token row, padding included, is
              projected away from the unwanted words' directions: X' = X - a X V V^T, V the
              right-singular vectors of the unwanted tokens' encoder output, a = ``decor_strength``
              (sec. 3; ``imagic_kit/projection.py``). From fresh noise, classifier-free guidance against the
              empty prompt, with the customised UNet.

The unwanted words are ``decor_remove`` or, by default, the words of the source prompt that the
target drops. The paper customises for personalisation and style; the toolkit's use is editing:
the references are the input, the source prompt its caption, the target prompt the edit.

The toolkit's choices, one line each, with their evidence in docs/methods/decor.md:
- the customisation: a LoRA on the ResNet convolutions (as Imagic's), constant learning rate, the
  v-weighted loss, 500 steps: long enough to hold the reference's layout, short of the
  overfitting that draws the new object mottled and off-colour (#customisation);
- the projection's strength, with the words' rows read in the source prompt
  (#strength-and-context);
- best of N by the shared ranking, and the restore of unedited pixels (``selection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import projection
from ..artifacts import Fit
from ..config import default
from ..finetune import FineTuneConfig
from ..lora import check_targets, lora_applied
from ..optim import denoising_loss
from ..projection import DecorConfig
from ..registry import MethodSpec, register_method
from ..sampling import SamplingConfig, sample_with
from ..selection import BestOfNConfig
from ._common import loss_options, train_unet


@dataclass
class DecorMethodConfig(SamplingConfig, BestOfNConfig, FineTuneConfig, DecorConfig):
    finetune_steps: int = default(
        "finetune_steps", 500, help="LoRA customisation steps on the reference image(s)"
    )
    finetune_lr: float = default("finetune_lr", 2e-3, help="Adam learning rate of the LoRA")
    finetune_schedule: str = default("finetune_schedule", "constant")
    decor_strength: float = default("decor_strength", 0.5)
    guidance_scale: float = default("guidance_scale", 5.0)
    ddim_eta: float = default("ddim_eta", 0.5)
    candidates: int = default("candidates", 8)
    restore_unedited: float = default("restore_unedited", 0.12)


def fit(backbone, inputs, config: DecorMethodConfig, generator, progress) -> Fit:
    check_targets(backbone.unet, config.lora_targets)
    z0 = backbone.encode_latents(inputs.pixels).float()  # every reference
    n, b = z0.shape[0], config.batch_size
    cond = backbone.encode_prompt(inputs.source_prompt).float()
    loss = lambda step: denoising_loss(  # noqa: E731
        backbone,
        z0[(torch.arange(b) + step * b) % n],  # the references in turn
        cond,
        generator,
        **loss_options(config),
    )
    return train_unet(backbone, Fit(), config, generator, progress, loss, stage="customise-lora")


def sample(
    backbone, fit: Fit, inputs, config: DecorMethodConfig, generator, progress
) -> torch.Tensor:
    cond = projection.projector(backbone, inputs, config)(
        backbone.encode_prompt(inputs.prompt).float()
    )
    n = config.num_images_per_prompt
    x = backbone.randn(backbone.latent_shape(n), generator)
    with lora_applied(backbone.unet, fit.lora, fit.lora_spec):
        return sample_with(backbone, x, cond, config, generator, progress)


register_method(
    MethodSpec(
        name="decor",
        description="DECOR: a LoRA customised on the reference image(s) under the source prompt; "
        "the target prompt's embedding projected away from the words it drops",
        config_cls=DecorMethodConfig,
        fit=fit,
        sample=sample,
        source_prompt="required",
        fit_depends_on=("source_prompt",),
        edit_facts=projection.facts,
        max_images=16,
        paper="Jang et al., arXiv 2412.09169",
        main_field="decor_strength",
        title="Decor",
    )
)
