"""Per-step embedding tuning along a DDIM inversion: the machinery that Prompt Tuning Inversion and
null-text inversion share.

Both methods (Dong et al., arXiv 2305.04441, sec. 3.2; Mokady et al., arXiv 2211.09794, sec. 3.2)
correct the drift of DDIM inversion under classifier-free guidance the same way:

1. invert the input latent z*_0 with guidance 1 to the trajectory z*_0 .. z*_T (the "pivots");
2. walk back from z*_T: at sampling step i, optimise one embedding so that the *guided* DDIM step
   from the current latent lands on the next pivot, then advance the latent with it.

They differ only in which embedding is tuned: PTI tunes the conditional one (the unconditional stays
the empty prompt's), null-text inversion the unconditional one (the conditional stays the source
caption's). :func:`tune_along` takes that choice as ``tune="cond"`` or ``"uncond"``; each method's
module builds its conditions around it. Sampling from z*_T with the tuned embeddings at the same
guidance and schedule retraces the tuned trajectory, which is how both reconstruct the input.

The optimisation runs in float32 whatever the backbone's dtype (``optim.optimize`` refuses
anything else), through the same DDIM step that sampling uses (``sampling.ddim_step``), so epsilon,
v and x0-prediction models are handled alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .artifacts import Fit
from .backbone import Backbone
from .config import default, param, shared_config
from .errors import ArtifactMismatchError
from .optim import optimize
from .progress import SILENT, ProgressOptions
from .sampling import SamplingConfig, Schedule, ddim_invert, ddim_step, schedule


@shared_config
@dataclass
class TunedInversionConfig(SamplingConfig):
    """Fields shared by the methods that tune an embedding per DDIM step; each method redeclares
    the defaults it measured (the field's help, range and stage stay these). The fit is made for
    one schedule and one guidance scale, so the sampler's steps and guidance are fit-stage here."""

    fit_fields = ("num_inference_steps", "guidance_scale")

    num_inference_steps: int = default(
        "num_inference_steps",
        50,
        help="DDIM steps, shared by the inversion, the tuning and the sampling (a fit is made for "
        "one schedule)",
    )
    guidance_scale: float = default(
        "guidance_scale",
        7.5,
        help="classifier-free guidance scale while tuning and sampling (a fit is made for one "
        "scale: the tuned embeddings undo the drift that this guidance causes)",
    )
    ddim_eta: float = default(
        "ddim_eta",
        0.0,
        help="DDIM eta when sampling: 0 retraces the tuned trajectory (the papers'); above 0, "
        "DDPM-like noise at each step moves away from it",
    )
    tune_steps: int = param(
        10,
        help="optimisation steps per DDIM step (at most: a step stops early under tune_tolerance)",
        stage="fit",
        min=0,
        max=1000,
    )
    tune_lr: float = param(
        1e-2, help="Adam learning rate of the per-step embeddings", stage="fit", min=0.0, max=1.0
    )
    tune_lr_decay: float = param(
        0.5,
        help="the learning rate falls linearly by this fraction from the first DDIM step to the "
        "last (0.5 over 50 steps is null-text inversion's lr * (1 - i/100))",
        stage="fit",
        min=0.0,
        max=1.0,
    )
    tune_tolerance: float = param(
        1e-5,
        help="a DDIM step's tuning stops once the latent MSE to the pivot is below this; the "
        "bound grows linearly to ~100x at the last step (null-text's 1e-5 + i * 2e-5 over 50)",
        stage="fit",
        min=0.0,
        max=1.0,
    )


def tune_schedule(config: TunedInversionConfig, j: int, k: int) -> tuple[float, float]:
    """The learning rate and early-stop bound of step ``j`` of ``k`` (0 = the noisiest)."""
    lr = config.tune_lr * (1.0 - config.tune_lr_decay * j / k)
    return lr, config.tune_tolerance * (1.0 + 100.0 * j / k)


def tune_along(
    backbone: Backbone,
    trajectory: list[torch.Tensor],
    sch: Schedule,
    *,
    fixed: torch.Tensor,
    init: torch.Tensor,
    tune: Literal["cond", "uncond"],
    config: TunedInversionConfig,
    progress: ProgressOptions = SILENT,
    stage: str = "tune",
) -> torch.Tensor:
    """Tune one embedding per active step of ``sch`` so that guided DDIM retraces ``trajectory``.

    Args:
        trajectory: ``ddim_invert``'s output ``[z*_0, ..., z*_K]``.
        fixed: the embedding that stays as given (the unconditional one when ``tune="cond"``).
        init: the first step's starting embedding; each later step starts from the previous
            step's result (both papers).
    Returns: the tuned embeddings ``[K, L, D]`` (float32, on the backbone's device), row ``j`` for
    sampling step ``sch.start + j``.
    """
    if tune not in ("cond", "uncond"):
        raise ValueError(f"tune must be 'cond' or 'uncond', got {tune!r}")
    k = len(trajectory) - 1
    if k != len(sch.active):
        raise ValueError(f"the trajectory has {k} steps, the schedule {len(sch.active)}")
    fixed = fixed.detach().float()
    current = init.detach().float().clone()
    x = trajectory[-1].float()
    tuned = []

    def pair(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (cond, uncond)
        return (e, fixed) if tune == "cond" else (fixed, e)

    with progress(k, stage) as bar:
        for j in range(k):
            i = sch.start + j
            pivot = trajectory[k - j - 1].float()
            emb = current.clone().requires_grad_(True)

            def loss_fn(_step: int, x=x, i=i, pivot=pivot, emb=emb) -> torch.Tensor:
                c, u = pair(emb)
                moved = ddim_step(backbone, x, sch, i, c, u, config.guidance_scale)
                return F.mse_loss(moved, pivot)

            lr, bound = tune_schedule(config, j, k)
            losses: list[float] = []
            if config.tune_steps > 0:
                with torch.enable_grad():
                    losses = optimize(
                        [emb],
                        loss_fn,
                        steps=config.tune_steps,
                        lr=lr,
                        stop_fn=lambda _s, value, bound=bound: value < bound,
                        stage=f"{stage} step {j + 1}/{k}",
                        what=f"the {'conditional' if tune == 'cond' else 'unconditional'} embedding",
                    )
            current = emb.detach()
            with torch.no_grad():
                c, u = pair(current)
                x = ddim_step(backbone, x, sch, i, c, u, config.guidance_scale)
            tuned.append(current)
            bar.update(inner=len(losses), loss=losses[-1] if losses else float("nan"))
    return torch.cat(tuned)


def fit_tuned(
    backbone: Backbone,
    inputs,
    config: TunedInversionConfig,
    progress: ProgressOptions,
    *,
    tune: Literal["cond", "uncond"],
    invert_cond: torch.Tensor,
    fixed: torch.Tensor,
    init: torch.Tensor,
) -> Fit:
    """Invert the latent of the input's first image (guidance 1, conditioned on ``invert_cond``),
    then :func:`tune_along`.

    The fit holds ``inverted`` (z*_T), ``embeddings`` ([K, L, D]) and ``timesteps`` (the schedule
    they were tuned on, checked by :func:`tuned_conditions` before a saved fit is sampled)."""
    sch = schedule(backbone, config.num_inference_steps)
    trajectory = ddim_invert(
        backbone,
        backbone.encode_latents(inputs.pixels[:1]).float(),
        invert_cond,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=1.0,
        progress=progress,
    )
    embeddings = tune_along(
        backbone,
        trajectory,
        sch,
        fixed=fixed,
        init=init,
        tune=tune,
        config=config,
        progress=progress,
        stage=f"tune-{tune}",
    )
    return Fit(
        tensors={
            "inverted": trajectory[-1].cpu(),
            "embeddings": embeddings.cpu(),
            "timesteps": torch.tensor(sch.active, dtype=torch.int64),
        }
    )


def tuned_conditions(backbone: Backbone, fit: Fit, config: TunedInversionConfig):
    """The saved z*_T and a per-step lookup ``(i, t) -> tuned embedding`` for ``ddim_sample``.

    Refuses a fit whose timesteps are not this schedule's (another scheduler configuration)."""
    sch = schedule(backbone, config.num_inference_steps)
    saved = fit.tensor("timesteps").tolist()
    if saved != sch.active:
        raise ArtifactMismatchError(
            f"the fit was tuned on {len(saved)} timesteps ({saved[:3]}...), this model's schedule "
            f"for num_inference_steps={config.num_inference_steps} is {sch.active[:3]}...; refit "
            "(drop --artifacts) on this model"
        )
    embeddings = fit.tensor("embeddings", backbone.device)

    def per_step(i: int, _t: int) -> torch.Tensor:
        return embeddings[i - sch.start].unsqueeze(0)

    return fit.tensor("inverted", backbone.device), per_step
