"""Config fields shared by several methods (same name, help and range everywhere)."""

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


def num_images_per_prompt(default: int = 1):
    return param(default, help="images generated from one fit", stage="sample", min=1, max=64)


def ddim_eta(default: float = 0.0):
    return param(
        default,
        help="DDIM eta: 0 deterministic, 1 DDPM-like noise at each step",
        stage="sample",
        min=0.0,
        max=1.0,
    )


def candidates(default: int = 1):
    return param(
        default,
        help="samples drawn for each returned image; the best by rank_by are kept (1 = no ranking)",
        stage="sample",
        min=1,
        max=256,
    )


def rank_by(default: str = "clip+structure"):
    from ..ranking import RANK_BY

    return param(
        default,
        help="how candidates are ranked: the z-scores of the CLIP score to the prompt (weight 1), "
        "the outline similarity to the input (structure_weight) and the fidelity to the input "
        "(trimmed PSNR, fidelity_weight), summed; any of them, in that order",
        stage="sample",
        choices=list(RANK_BY),
    )


def structure_weight(default: float = 0.5):
    return param(
        default,
        help="weight of the outline similarity against the CLIP score when ranking candidates",
        stage="sample",
        min=0.0,
        max=100.0,
    )


def fidelity_weight(default: float = 0.25):
    return param(
        default,
        help="weight of the fidelity to the input (PSNR of its best-matching half) against the "
        "CLIP score when ranking candidates",
        stage="sample",
        min=0.0,
        max=100.0,
    )


def rank_clip(default: str = ""):
    return param(
        default,
        help="CLIP model (folder or hub id) for the ranking's text score; empty = the model's own "
        "(the embedded model ships one)",
        stage="sample",
    )


def restore_unedited(default: float = 0.0):
    return param(
        default,
        help="copy the pixels the edit left alone back from the input (imagic_kit/restore.py): the "
        "difference (RMS, fraction of the full range, blurred) from which a pixel counts as "
        "edited; under half of it the input's pixel is kept. 0 = off, every pixel generated (use "
        "0 for global edits such as lighting or style)",
        stage="sample",
        min=0.0,
        max=1.0,
    )
