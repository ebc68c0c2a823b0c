"""DDIM sampling and DDIM inversion with one signature (Song et al. 2021, eq. 12 with sigma = eta * ...).

A condition is either a tensor [B|1, L, D] or a function ``(i, t) -> tensor`` where ``i`` is the
index of timestep ``t`` in the *sampling* schedule (descending): per-step conditions (Prompt Tuning
Inversion's c_t, null-text's per-step unconditional embeddings) plug in without another loop.

The schedule comes from the backbone's scheduler (``set_timesteps`` honours ``timestep_spacing`` and
``steps_offset``); the update itself is written here for both directions so that, for a model whose
noise estimate does not depend on x_t, inversion followed by sampling is an exact round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbone import Backbone
from .config import param, shared_config
from .progress import SILENT, ProgressOptions

Condition = torch.Tensor | Callable[[int, int], torch.Tensor]


@shared_config
@dataclass
class SamplingConfig:
    """The sampler's fields, declared once for every method that samples with :func:`ddim_sample`
    (:func:`sample_with` reads them). A method gives one its own default with
    :func:`~imagic_kit.config.default`, and names in ``fit_fields`` those its fit depends on (DDIM
    inversion is made for one schedule): they become fit-stage fields of that method."""

    #: A method lists these fields among its own where it writes one out (``config.field_infos``).
    shown_as_own = True

    num_inference_steps: int = param(
        50, help="DDIM steps when sampling", stage="sample", min=1, max=1000
    )
    guidance_scale: float = param(
        7.5,
        help="classifier-free guidance scale (1 = no guidance)",
        stage="sample",
        min=1.0,
        max=50.0,
    )
    ddim_eta: float = param(
        0.0,
        help="DDIM eta: 0 deterministic, 1 DDPM-like noise at each step",
        stage="sample",
        min=0.0,
        max=1.0,
    )


@dataclass(frozen=True)
class Sampled:
    """What a method's ``sample`` returns when its sampling also drew the region the edit may
    change (the attention control's local blend): the latents, and the region [1 or N, 1, h, w]
    (1 = may change) at the latents' resolution. ``selection.select`` puts the input's pixels
    back outside it after decoding. A method may also return the latents alone."""

    latents: torch.Tensor
    region: torch.Tensor | None = None


def unpack(out: torch.Tensor | Sampled) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A ``sample`` result as (latents, region or None)."""
    return (out.latents, out.region) if isinstance(out, Sampled) else (out, None)


@dataclass(frozen=True)
class Schedule:
    """Descending timesteps of a DDIM run and the cumulative alphas either side of each step."""

    timesteps: list[int]  # t_0 > t_1 > ... (sampling order)
    start: int  # index of the first timestep that is run (img2img strength)
    final_alpha: float  # abar after the last step (the "clean" end)

    @property
    def active(self) -> list[int]:
        return self.timesteps[self.start :]


def schedule(backbone: Backbone, num_inference_steps: int, strength: float = 1.0) -> Schedule:
    """The DDIM schedule; ``strength`` < 1 keeps only the last ``round(n * strength)`` steps (SDEdit).

    Timesteps the scheduler places outside the model's training range are dropped, as are
    repeats: with ``steps_offset=1`` and "leading" spacing (the SD configuration) diffusers asks
    1000 steps of a 1000-timestep model to start at t = 1000, one past the last one trained, so
    that run takes the 999 valid ones."""
    if num_inference_steps < 1:
        raise ValueError("num_inference_steps must be at least 1")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength={strength} must be in (0, 1]")
    sch = backbone.scheduler
    sch.set_timesteps(num_inference_steps)
    top = backbone.num_train_timesteps
    ts = list(dict.fromkeys(int(t) for t in sch.timesteps if 0 <= int(t) < top))
    n = len(ts)
    keep = min(max(int(round(n * strength)), 1), n)
    final = getattr(sch, "final_alpha_cumprod", None)
    final_alpha = float(final) if final is not None else float(backbone.alphas_cumprod[0])
    return Schedule(ts, len(ts) - keep, final_alpha)


def _resolve(cond: Condition | None, i: int, t: int) -> torch.Tensor | None:
    return cond(i, t) if callable(cond) else cond


def _alpha(backbone: Backbone, sch: Schedule, i: int) -> float:
    """abar at sampling index i; index len(timesteps) is the clean end."""
    if i >= len(sch.timesteps):
        return sch.final_alpha
    return float(backbone.alphas_cumprod[sch.timesteps[i]])


def ddim_move(x: torch.Tensor, eps: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    """Deterministic DDIM move between noise levels along the eps direction (either way)."""
    a_from_t = torch.tensor(a_from, dtype=torch.float64)
    a_to_t = torch.tensor(a_to, dtype=torch.float64)
    x0 = (x.double() - (1 - a_from_t).sqrt() * eps.double()) / a_from_t.sqrt()
    return (a_to_t.sqrt() * x0 + (1 - a_to_t).sqrt() * eps.double()).float()


def guided_eps(
    backbone: Backbone,
    x: torch.Tensor,
    t: int,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """The guided noise estimate at (x, t), converted from the model's prediction type."""
    out = backbone.noise_pred(x, t, cond, uncond, guidance_scale)
    return backbone.to_x0_eps(x, out, t)[1]


def ddim_step(
    backbone: Backbone,
    x: torch.Tensor,
    sch: Schedule,
    i: int,
    cond: torch.Tensor,
    uncond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One sampling step from timestep ``sch.timesteps[i]`` to the next lower noise level.

    Differentiable in ``cond``/``uncond`` (PTI and null-text optimise through it).
    """
    t = sch.timesteps[i]
    a_t, a_prev = _alpha(backbone, sch, i), _alpha(backbone, sch, i + 1)
    out = backbone.noise_pred(x, t, cond, uncond, guidance_scale)
    x0, eps = backbone.to_x0_eps(x, out, t)
    if eta == 0.0:
        return ddim_move(x, eps, a_t, a_prev)  # the same move inversion runs backwards
    sigma = eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5
    direction = max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
    assert noise is not None, "eta > 0 needs noise"
    return (a_prev**0.5) * x0 + direction + sigma * noise


@torch.no_grad()
def ddim_sample(
    backbone: Backbone,
    latents: torch.Tensor,
    cond: Condition,
    *,
    num_inference_steps: int,
    guidance_scale: float = 7.5,
    uncond: Condition | None = None,
    strength: float = 1.0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: ProgressOptions = SILENT,
    stage: str = "sample",
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Denoise ``latents`` (pure noise when strength is 1, else x at the first active timestep).

    Args:
        latents: [B, C, h, w] at noise level ``schedule(...).active[0]``.
        cond, uncond: conditions (tensor or per-step function); ``uncond`` defaults to the
            backbone's empty-prompt embedding when guidance is used.
        eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like); noise from ``generator``.
        before_step: called with the index of each active step (0 = the noisiest) before the
            model runs it, e.g. to change the model's weights part-way (Imagic's late strength).
        after_step: ``(j, x) -> x`` after active step ``j``, e.g. a blend of the latents
            (attention control's local blend).
        progress: bars and events; its ``step_end(step, t, {"latents": x})`` is called after each
            step and may return other latents, which sampling continues from.
    Returns: clean latents [B, C, h, w] (float32).
    """
    sch = schedule(backbone, num_inference_steps, strength)
    if uncond is None and guidance_scale != 1.0:
        uncond = backbone.uncond_embedding(1)
    if eta > 0 and generator is None:
        raise ValueError("eta > 0 needs a generator")
    x = latents.float()
    with progress(len(sch.active), stage) as bar:
        for i in range(sch.start, len(sch.timesteps)):
            t = sch.timesteps[i]
            noise = backbone.randn(tuple(x.shape), generator) if eta > 0 else None
            if before_step is not None:
                before_step(i - sch.start)
            x = ddim_step(
                backbone,
                x,
                sch,
                i,
                _resolve(cond, i, t),
                _resolve(uncond, i, t),
                guidance_scale,
                eta=eta,
                noise=noise,
            )
            if after_step is not None:
                x = after_step(i - sch.start, x)
            if progress.step_end is not None:
                changed = progress.step_end(i - sch.start, t, {"latents": x})
                if changed is not None and "latents" in changed:
                    x = changed["latents"].to(device=x.device, dtype=x.dtype)
            bar.update()
    return x


@torch.no_grad()
def ddim_invert(
    backbone: Backbone,
    latents: torch.Tensor,
    cond: Condition,
    *,
    num_inference_steps: int,
    guidance_scale: float = 1.0,
    uncond: Condition | None = None,
    strength: float = 1.0,
    progress: ProgressOptions = SILENT,
    stage: str = "invert",
) -> list[torch.Tensor]:
    """DDIM inversion: run the deterministic update backwards, from clean latents to noise.

    The noise estimate for the move to timestep t is taken at the current (less noisy) latent with
    timestep t, the usual approximation (Dhariwal & Nichol 2021; Mokady et al. 2022 sec. 3).
    Guidance 1 with the source prompt gives the most faithful trajectory.

    Returns: the trajectory ``[z_0, z_1, ..., z_K]`` (K = active steps), ``z_0`` the input and
    ``z_K`` the latent at ``schedule(...).active[0]``; sampling step ``sch.start + j`` goes from
    ``z_{K-j}`` to ``z_{K-j-1}``.
    """
    sch = schedule(backbone, num_inference_steps, strength)
    if uncond is None and guidance_scale != 1.0:
        uncond = backbone.uncond_embedding(1)
    x = latents.float()
    traj = [x]
    with progress(len(sch.active), stage) as bar:
        for i in reversed(range(sch.start, len(sch.timesteps))):
            t = sch.timesteps[i]
            eps = guided_eps(
                backbone, x, t, _resolve(cond, i, t), _resolve(uncond, i, t), guidance_scale
            )
            x = ddim_move(x, eps, _alpha(backbone, sch, i + 1), _alpha(backbone, sch, i))
            traj.append(x)
            bar.update()
    return traj


def sample_with(
    backbone: Backbone,
    latents: torch.Tensor,
    cond: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None,
    progress: ProgressOptions = SILENT,
    **options,
) -> torch.Tensor:
    """:func:`ddim_sample` with a method config's sampler fields (``num_inference_steps``,
    ``guidance_scale``, ``ddim_eta``); ``options`` are its other keywords (``uncond``,
    ``strength``, ``before_step``, ``after_step``)."""
    return ddim_sample(
        backbone,
        latents,
        cond,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        eta=config.ddim_eta,
        generator=generator,
        progress=progress,
        **options,
    )
