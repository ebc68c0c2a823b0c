"""SDEdit (Meng et al., ICLR 2022, arXiv 2108.01073): noise the input to a strength, denoise with the target.

A baseline: it keeps coarse layout and colours up to ``strength`` and regenerates the rest, so it
trades fidelity against edit strength with one knob.

Fit: the input's VAE latent (nothing is learned). Sample: x_{t0} = sqrt(abar) z0 + sqrt(1-abar) eps
at the first timestep kept by ``strength``, then DDIM with the target prompt (sec. 3, "SDEdit").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..artifacts import Fit
from ..config import param
from ..registry import MethodSpec, register_method
from ..sampling import ddim_sample, schedule
from ._common import (
    candidates,
    ddim_eta,
    fidelity_weight,
    guidance_scale,
    num_images_per_prompt,
    num_inference_steps,
    rank_by,
    rank_clip,
    restore_unedited,
    structure_weight,
)


@dataclass
class SDEditConfig:
    strength: float = param(
        0.6,
        help="how far to noise the input: 0 keeps it, 1 ignores it",
        stage="sample",
        min=0.02,
        max=1.0,
    )
    num_inference_steps: int = num_inference_steps(50)
    guidance_scale: float = guidance_scale(7.5)
    num_images_per_prompt: int = num_images_per_prompt(1)
    ddim_eta: float = ddim_eta(0.0)
    # best of N (imagic_kit/ranking.py); 1 = the baseline as published. Its samples differ only by
    # the noise added to the input, so N > 1 is a fair comparison for Imagic's best of 16.
    candidates: int = candidates(1)
    rank_by: str = rank_by()
    structure_weight: float = structure_weight()
    fidelity_weight: float = fidelity_weight()
    rank_clip: str = rank_clip()
    restore_unedited: float = restore_unedited()


def fit(backbone, inputs, config: SDEditConfig, generator, progress) -> Fit:
    return Fit(tensors={"latents": backbone.encode_latents(inputs.pixels[:1]).float().cpu()})


def sample(backbone, fit: Fit, inputs, config: SDEditConfig, generator, progress) -> torch.Tensor:
    n = config.num_images_per_prompt
    z0 = fit.tensor("latents", backbone.device).expand(n, -1, -1, -1)
    sch = schedule(backbone, config.num_inference_steps, config.strength)
    t0 = torch.full((n,), sch.active[0], device=backbone.device)
    x = backbone.add_noise(z0, backbone.randn(tuple(z0.shape), generator), t0)
    cond = backbone.encode_prompt(inputs.prompt)
    return ddim_sample(
        backbone,
        x,
        cond,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        strength=config.strength,
        eta=config.ddim_eta,
        generator=generator,
        progress=progress,
    )


register_method(
    MethodSpec(
        name="sdedit",
        description="baseline: noise the input to a strength, then denoise with the target prompt",
        config_cls=SDEditConfig,
        fit=fit,
        sample=sample,
        paper="Meng et al., arXiv 2108.01073",
    )
)
