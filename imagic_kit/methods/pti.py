"""Prompt Tuning Inversion (Dong, Xue, Duan, Han, ICCV 2023, arXiv 2305.04441).

    fit    1. DDIM-invert the input latent with guidance 1, conditioned on ``inversion_prompt``
              (the empty prompt by default), to the pivots z*_0 .. z*_T (sec. 3.2).
           2. From z*_T, for each sampling step t: optimise a conditional embedding c_t, starting
              from the previous step's (the first from the target prompt's embedding), so that the
              guided DDIM step against the empty prompt lands on z*_{t-1}; advance with c_t
              (sec. 3.2, "reconstruction"). The model stays frozen.
    sample 3. From z*_T, DDIM with classifier-free guidance against the empty prompt; the condition
              at step t is eta * e_tgt + (1 - eta) * c_t (sec. 3.3, "editing"). eta = 0 retraces
              the tuned trajectory and reproduces the input.

The machinery (inversion, per-step tuning, the saved fit) is shared with null-text inversion in
``imagic_kit/inversion.py``; this module only says which embedding is tuned and how the editing
condition is formed.

No official code exists; the choices the paper leaves open are the toolkit's own, one line each,
with their evidence in docs/methods/pti.md:
- the inversion conditioned on the empty prompt (#inversion-prompt);
- a few Adam steps per DDIM step, the learning rate decaying, an early stop whose bound grows
  along the schedule (#tuning-steps-and-learning-rate);
- the same guidance for tuning and sampling (#guidance), and the interpolation weight eta
  (#interpolation-weight-eta);
- ``eta_start``: the first steps run on c_t alone; the candidates spread it, and the shared
  ranking keeps the best (#candidates-over-eta_start);
- the unedited pixels restored (#restoring-unedited-pixels);
- DECOR's projection as an option (``decor_strength``, off by default; ``projection.py``),
  applied to each step's interpolated condition (docs/methods/decor.md);
- Prompt-to-Prompt attention control as an option (``cross_replace_steps``, ``self_replace_steps``,
  off by default; ``attention_control.py``): the source branch is the tuned c_t alone, the
  reconstruction (docs/methods/attention-control.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import attention_control, projection
from ..artifacts import Fit
from ..attention_control import AttentionControlConfig, Branches, sample_with_control
from ..config import default, param
from ..errors import ConfigError
from ..inversion import TunedInversionConfig, fit_tuned, tuned_conditions
from ..projection import DecorConfig
from ..registry import MethodSpec, register_method
from ..selection import BestOfNConfig, images_per_prompt
from ._common import eta

INVERSION_PROMPTS = ("empty", "target", "source")


@dataclass
class PTIConfig(BestOfNConfig, TunedInversionConfig, DecorConfig, AttentionControlConfig):
    inversion_prompt: str = param(
        "empty",
        help="the prompt that conditions the DDIM inversion: empty, target (the edit's prompt) or "
        "source (needs --source-prompt)",
        stage="fit",
        choices=list(INVERSION_PROMPTS),
    )
    eta: float = eta(1.0)
    eta_start: float = param(
        0.5,
        help="fraction of the sampling steps, from the noisy end, run on the tuned embeddings alone "
        "(eta 0) before eta applies: they lay out the input's structure. With several "
        "candidates, they spread evenly from 0 (eta at every step, the paper's edit) to this; "
        "with one, it is this",
        stage="sample",
        min=0.0,
        max=1.0,
    )
    tune_lr: float = default("tune_lr", 2e-2)
    candidates: int = default("candidates", 11)
    restore_unedited: float = default("restore_unedited", 0.12)


def _inversion_text(inputs, config: PTIConfig) -> str:
    if config.inversion_prompt == "source":
        if not inputs.source_prompt:
            raise ConfigError(
                "inversion_prompt=source needs a source prompt: give --source-prompt (a caption of "
                "the input) or set inversion_prompt=empty"
            )
        return inputs.source_prompt
    return inputs.prompt if config.inversion_prompt == "target" else ""


def fit(backbone, inputs, config: PTIConfig, generator, progress) -> Fit:
    text = _inversion_text(inputs, config)
    e_tgt, empty = backbone.encode_prompt(inputs.prompt), backbone.uncond_embedding(1)
    invert = backbone.encode_prompt(text) if text else empty
    return fit_tuned(
        backbone, inputs, config, progress, tune="cond", invert_cond=invert, fixed=empty, init=e_tgt
    )


def sample(backbone, fit: Fit, inputs, config: PTIConfig, generator, progress) -> torch.Tensor:
    z_t, tuned = tuned_conditions(backbone, fit, config)
    e_tgt = backbone.encode_prompt(inputs.prompt).float()
    n = images_per_prompt(config)
    # each sample's first eta-step: candidates spread evenly over [0, eta_start]
    starts = torch.tensor(
        [
            round(
                candidate_eta_start(config, inputs.first_candidate + b, inputs.draws)
                * config.num_inference_steps
            )
            for b in range(n)
        ]
    )

    project = projection.projector(backbone, inputs, config)  # DECOR's option (identity when off)

    def cond(i: int, t: int) -> torch.Tensor:
        eta = (config.eta * (i >= starts).float()).to(e_tgt).view(-1, 1, 1)
        mixed = eta * e_tgt + (1.0 - eta) * tuned(i, t)
        # DECOR's option where the target enters; the steps on c_t alone stay the reconstruction
        return torch.where(eta != 0, project(mixed), mixed)

    # the attention control's source branch: the tuned c_t alone (the reconstruction), whose
    # tokens are the target prompt's (the tuning starts from its embedding)
    branches = Branches.of(backbone, inputs, source_cond=tuned, layout=inputs.prompt)
    latents = z_t.expand(n, -1, -1, -1)
    return sample_with_control(backbone, latents, cond, config, generator, progress, branches)


def candidate_eta_start(config: PTIConfig, j: int, draws: int) -> float:
    """The ``eta_start`` of sample ``j`` of ``draws``: evenly from 0 to ``config.eta_start``."""
    if draws <= 1:
        return config.eta_start
    return config.eta_start * j / (draws - 1)


def _fit_inputs(config: PTIConfig) -> tuple[str, ...]:
    # the trajectory depends on the inversion's prompt; the tuned c_t start from the target's
    # embedding but reconstruct the input whatever it was, so a new target reuses the fit
    return {"target": ("prompt",), "source": ("source_prompt",)}.get(config.inversion_prompt, ())


register_method(
    MethodSpec(
        name="pti",
        description="Prompt Tuning Inversion: DDIM inversion + per-step conditional embeddings, "
        "interpolated with the target",
        config_cls=PTIConfig,
        fit=fit,
        sample=sample,
        source_prompt="optional",
        fit_depends_on=_fit_inputs,
        edit_facts=(projection.facts, attention_control.facts),
        paper="Dong et al., arXiv 2305.04441",
        main_field="eta",
        title="PTI",
    )
)
