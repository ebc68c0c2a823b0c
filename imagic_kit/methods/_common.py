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
