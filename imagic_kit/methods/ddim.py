"""DDIM inversion + target prompt (Song et al. 2021; the inversion baseline of Mokady et al. 2022, sec. 3).

Fit: invert the input's latent along the deterministic DDIM trajectory conditioned on the source
prompt (or the empty prompt), with guidance ``inversion_guidance_scale`` (1 is the most faithful).
Sample: run DDIM from the inverted latent with the target prompt and classifier-free guidance.
With guidance the reconstruction drifts; that drift is what PTI and null-text inversion correct.
With a source prompt the edit is made with Prompt-to-Prompt attention control: the source prompt's
branch runs beside it and lends it its attention maps (``imagic_kit/attention_control.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .. import attention_control
from ..artifacts import Fit
from ..attention_control import AttentionControlConfig, Branches, sample_with_control
from ..config import default, param
from ..registry import MethodSpec, register_method
from ..sampling import SamplingConfig, ddim_invert
from ..selection import RestoreConfig


@dataclass
class DDIMConfig(SamplingConfig, RestoreConfig, AttentionControlConfig):
    fit_fields = ("num_inference_steps",)  # the inverted latent is made for one schedule

    num_inference_steps: int = default(
        "num_inference_steps", 50, help="DDIM steps, shared by the inversion and the sampling"
    )
    inversion_guidance_scale: float = param(
        1.0,
        help="guidance while inverting (1 = none, most faithful)",
        stage="fit",
        min=1.0,
        max=50.0,
    )
    strength: float = param(
        1.0,
        help="fraction of the schedule that is inverted and resampled",
        stage="fit",
        min=0.02,
        max=1.0,
    )
    cross_replace_steps: float = default("cross_replace_steps", 0.8)
    self_replace_steps: float = default("self_replace_steps", 0.9)
    blend_mask: str = default("blend_mask", "difference")
    blend_threshold: float = default("blend_threshold", 0.2)


def fit(backbone, inputs, config: DDIMConfig, generator, progress) -> Fit:
    z0 = backbone.encode_latents(inputs.pixels[:1])
    if not inputs.source_prompt:
        warnings.warn(
            "ddim: no source prompt, so the inversion used the empty prompt; a caption of the "
            "input (--source-prompt, or source_prompt=) inverts it more faithfully",
            stacklevel=2,
        )
    cond = backbone.encode_prompt(inputs.source_prompt or "")
    traj = ddim_invert(
        backbone,
        z0,
        cond,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.inversion_guidance_scale,
        strength=config.strength,
        progress=progress,
    )
    return Fit(tensors={"inverted": traj[-1].cpu()})


def sample(backbone, fit: Fit, inputs, config: DDIMConfig, generator, progress) -> torch.Tensor:
    cond = backbone.encode_prompt(inputs.prompt)
    latents = fit.tensor("inverted", backbone.device)
    # the attention control's source branch is the input under its caption: none without one
    branches = Branches.of(backbone, inputs) if inputs.source_prompt else None
    return sample_with_control(
        backbone, latents, cond, config, generator, progress, branches, strength=config.strength
    )


register_method(
    MethodSpec(
        name="ddim",
        description="baseline: DDIM-invert the input (source prompt), then sample with the target prompt",
        config_cls=DDIMConfig,
        fit=fit,
        sample=sample,
        source_prompt="optional",
        fit_depends_on=("source_prompt",),
        edit_facts=attention_control.facts,
        paper="Song et al., arXiv 2010.02502",
        main_field="guidance_scale",
        title="DDIM",
        baseline=True,
    )
)
