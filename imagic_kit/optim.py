"""The one optimisation loop, and the denoising loss every fitting method uses.

Trainable tensors are kept in float32 whatever the backbone's dtype (fp16 training is the most
common failure of public Imagic / null-text code); the loop stops with a clear error on a
non-finite loss instead of producing a black image later.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from .backbone import Backbone
from .errors import NonFiniteLossError
from .progress import SILENT, ProgressOptions

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
LOSS_WEIGHTINGS = ("eps", "v", "x0")
TIMESTEP_SAMPLINGS = ("uniform", "importance")


def lr_schedule(kind: str, lr: float, steps: int) -> Callable[[int], float] | None:
    """A per-step learning rate for :func:`optimize`'s ``lr_fn``: ``None`` for "constant" (the
    optimizer keeps ``lr``), or a cosine decay from ``lr`` at step 0 towards 0 at ``steps``."""
    if kind == "constant":
        return None
    if kind == "cosine":
        return lambda step: 0.5 * lr * (1.0 + math.cos(math.pi * step / max(steps, 1)))
    raise ValueError(f"lr schedule {kind!r} is unknown; choose one of: {', '.join(SCHEDULES)}")


def optimize(
    params: Iterable[torch.Tensor],
    loss_fn: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    lr_fn: Callable[[int], float] | None = None,
    max_grad_norm: float | None = None,
    stop_fn: Callable[[int, float], bool] | None = None,
    progress: ProgressOptions = SILENT,
    stage: str = "optimize",
    what: str = "the parameters",
) -> list[float]:
    """Minimise ``loss_fn(step)`` over ``params`` for ``steps`` steps; returns the losses.

    Args:
        lr_fn: optional per-step learning rate (overrides ``lr`` from that step on).
        stop_fn: ``(step, loss) -> bool``; True ends the loop early (e.g. null-text's threshold).
        what: names the parameters in error messages.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError(f"nothing to optimise: {what} have no tensor that requires grad")
    for p in params:
        if p.dtype != torch.float32:
            raise TypeError(f"trainable tensors must be float32, got {p.dtype} in {what}")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=lr, betas=betas, weight_decay=weight_decay
        )
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(
            f"optimizer {optimizer!r} is unknown; choose one of: {', '.join(OPTIMIZERS)}"
        )
    losses: list[float] = []
    with progress(steps, stage) as bar:
        for step in range(steps):
            if lr_fn is not None:
                for g in opt.param_groups:
                    g["lr"] = lr_fn(step)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(step)
            value = float(loss.detach())
            if not torch.isfinite(loss.detach()):
                raise NonFiniteLossError(
                    f"{stage}: loss became {value} at step {step + 1}/{steps} while optimising {what}; "
                    f"lower the learning rate (now {opt.param_groups[0]['lr']:g}) or run the model in float32"
                )
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            losses.append(value)
            bar.update(loss=value)
            if stop_fn is not None and stop_fn(step, value):
                break
    return losses


def timestep_weights(
    backbone: Backbone, t: torch.Tensor, weighting: str = "eps", cap: float | None = None
) -> torch.Tensor | None:
    """Per-sample loss weights that make the model's native loss act like another prediction
    type's loss; ``None`` when no reweighting is needed.

    At a given noisy input, the errors of the three parameterisations are tied:
    ``|err_v|^2 = |err_eps|^2 / abar`` and ``|err_x0|^2 = |err_eps|^2 / SNR`` with
    ``SNR = abar / (1 - abar)``. "eps" is the standard loss (the papers'); "v" and "x0" weigh the
    noisy timesteps more (``1/abar`` resp. ``1/SNR`` times the eps loss, capped at ``cap``), where the
    layout and the smooth, low-frequency content of an image are decided, so a fit reproduces them
    more precisely when sampling from fresh noise.
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(
            f"loss weighting {weighting!r} is unknown; choose one of: {', '.join(LOSS_WEIGHTINGS)}"
        )
    native = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}.get(backbone.prediction_type)
    if weighting == native and cap is None:
        return None
    abar = backbone.alphas_cumprod.to(t.device)[t.long()].float()
    eps_equiv = {"eps": torch.ones_like(abar), "v": 1.0 / abar, "x0": (1.0 - abar) / abar}
    w = eps_equiv[weighting]
    if cap is not None:
        w = w.clamp(max=cap)
    return w / eps_equiv[native or "eps"]


def importance_timesteps(
    backbone: Backbone,
    n: int,
    generator: torch.Generator,
    low: int = 0,
    high: int | None = None,
    weighting: str = "eps",
    cap: float | None = None,
) -> torch.Tensor:
    """``n`` timesteps in [low, high) drawn with probability proportional to their loss weight
    (:func:`timestep_weights`), stratified: the i-th comes from the i-th of n equal shares of that
    distribution. With the samples then counted equally, the expected loss is the weighted loss's,
    but no sample is spent where its weight is small (importance sampling of timesteps, as in
    Nichol & Dhariwal 2021, sec. 3.3, for the variational bound) and a batch always spans the noise
    levels. With the model's native weighting the distribution is uniform."""
    high = backbone.num_train_timesteps if high is None else high
    ts = torch.arange(low, high)
    w = timestep_weights(backbone, ts, weighting, cap)
    w = torch.ones(len(ts), dtype=torch.float64) if w is None else w.cpu().double()
    cdf = w.cumsum(0) / w.sum()
    u = (
        torch.arange(n, dtype=torch.float64)
        + torch.rand(n, generator=generator, dtype=torch.float64)
    ) / n
    idx = torch.searchsorted(cdf, u).clamp(max=len(ts) - 1)
    return ts[idx].to(backbone.device)


def denoising_loss(
    backbone: Backbone,
    latents: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator,
    *,
    t_low: int = 0,
    t_high: int | None = None,
    weighting: str = "eps",
    weight_cap: float | None = None,
    timesteps: str = "uniform",
) -> torch.Tensor:
    """The standard diffusion loss ||f(x_t, t, cond) - target||^2, fresh noise, t ~ U[t_low, t_high).

    The target follows the model's prediction type (eps or v). Used by every method that fits
    something to the input image (Imagic sec. 3.1-3.2, FastEdit, DECOR's customisation).
    Gradients flow into ``cond`` and any trainable UNet parameters. ``weighting`` / ``weight_cap``
    reweigh the timesteps (:func:`timestep_weights`; the batch's weights are normalised to sum 1).

    ``timesteps="importance"`` minimises the same weighted objective with less noise: each
    timestep is drawn with probability proportional to its weight, one from each of B equal
    shares of that distribution (stratified), and the samples count equally
    (:func:`importance_timesteps`).

    Shapes: latents [B, C, h, w], cond [B|1, L, D].
    """
    if timesteps not in TIMESTEP_SAMPLINGS:
        raise ValueError(
            f"timestep sampling {timesteps!r} is unknown; choose one of: "
            f"{', '.join(TIMESTEP_SAMPLINGS)}"
        )
    b = latents.shape[0]
    if timesteps == "importance":
        t = importance_timesteps(backbone, b, generator, t_low, t_high, weighting, weight_cap)
    else:
        t = backbone.sample_timesteps(b, generator, t_low, t_high)
    noise = backbone.randn(tuple(latents.shape), generator)
    x_t = backbone.add_noise(latents, noise, t)
    out = backbone.model_output(x_t, t, cond.expand(b, -1, -1) if cond.shape[0] != b else cond)
    target = backbone.training_target(latents, noise, t)
    w = None if timesteps == "importance" else timestep_weights(backbone, t, weighting, weight_cap)
    if w is None:
        return F.mse_loss(out, target)
    per_sample = (out - target).pow(2).flatten(1).mean(1)
    return (w * per_sample).sum() / w.sum()


@contextlib.contextmanager
def full_training(module: torch.nn.Module):
    """Train every weight of ``module`` in float32 inside a ``with`` block (yields the parameters);
    afterwards the original weights, dtype and frozen state are restored, so a fit never changes
    the shared backbone. Read the trained ``state_dict()`` inside the block."""
    original = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    dtype = next(module.parameters()).dtype
    module.float().requires_grad_(True)
    try:
        yield list(module.parameters())
    finally:
        module.requires_grad_(False)
        module.load_state_dict(original)
        module.to(dtype)
