"""Null-text inversion (Mokady, Hertz, Aberman, Pritch, Cohen-Or, CVPR 2023, arXiv 2211.09794).

    fit    1. DDIM-invert the input latent with guidance 1, conditioned on the source prompt (a
              caption of the input), to the pivots z*_0 .. z*_T (sec. 3.1, "pivotal inversion").
           2. From z*_T, for each sampling step t: optimise the unconditional ("null-text")
              embedding u_t, starting from the previous step's (the first from the empty prompt's),
              so that the guided DDIM step with the source prompt lands on z*_{t-1}; advance with
              u_t (sec. 3.2, "null-text optimization"). The model stays frozen.
    sample 3. From z*_T, DDIM with guidance; the unconditional embedding at step t is u_t, the
              conditional one eta * e_tgt + (1 - eta) * e_src. eta = 1 (the default) is the paper's
              edit: the target prompt in place of the source; eta = 0 reproduces the input.
           4. The edit is made with Prompt-to-Prompt attention control, as in the paper (sec. 4):
              the reconstruction (the source prompt) runs beside it in one batch and lends it its
              attention maps (``imagic_kit/attention_control.py``); ``cross_replace_steps=0`` and
              ``self_replace_steps=0`` swap the prompts alone (the paper's "w/o P2P").

The machinery is shared with Prompt Tuning Inversion (``imagic_kit/inversion.py``), of which this
is the mirror image.

The paper's values are the defaults: 50 DDIM steps, guidance 7.5, up to 10 Adam steps per DDIM
step at 1e-2 * (1 - i/100), early stop below 1e-5 + i * 2e-5 (sec. 4; docs/methods/null-text.md).
``eta`` is the toolkit's addition, so that sweeps and the demo treat it like the other editors
(docs/methods/null-text.md#interpolation-weight-eta).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import attention_control
from ..artifacts import Fit
from ..attention_control import AttentionControlConfig, Branches, sample_with_control
from ..config import default
from ..inversion import TunedInversionConfig, fit_tuned, tuned_conditions
from ..registry import MethodSpec, register_method
from ..selection import RestoreConfig
from ._common import eta


@dataclass
class NullTextConfig(TunedInversionConfig, RestoreConfig, AttentionControlConfig):
    eta: float = eta(
        1.0,
        help="weight of the target prompt against the source prompt: 1 = the target in its place "
        "(the paper's edit), 0 reproduces the input",
    )
    cross_replace_steps: float = default("cross_replace_steps", 0.4)
    self_replace_steps: float = default("self_replace_steps", 0.5)
    blend_mask: str = default("blend_mask", "difference")
    blend_threshold: float = default("blend_threshold", 0.2)


def fit(backbone, inputs, config: NullTextConfig, generator, progress) -> Fit:
    e_src = backbone.encode_prompt(inputs.source_prompt)
    empty = backbone.uncond_embedding(1)
    return fit_tuned(
        backbone,
        inputs,
        config,
        progress,
        tune="uncond",
        invert_cond=e_src,
        fixed=e_src,
        init=empty,
    )


def sample(backbone, fit: Fit, inputs, config: NullTextConfig, generator, progress) -> torch.Tensor:
    z_t, tuned = tuned_conditions(backbone, fit, config)
    e_tgt = backbone.encode_prompt(inputs.prompt).float()
    e_src = backbone.encode_prompt(inputs.source_prompt).float()
    cond = config.eta * e_tgt + (1.0 - config.eta) * e_src
    branches = Branches.of(backbone, inputs, source_cond=e_src)
    return sample_with_control(
        backbone, z_t, cond, config, generator, progress, branches, uncond=tuned
    )


register_method(
    MethodSpec(
        name="null-text",
        description="null-text inversion: DDIM inversion on the source prompt + per-step "
        "unconditional embeddings, then the target prompt",
        config_cls=NullTextConfig,
        fit=fit,
        sample=sample,
        source_prompt="required",
        fit_depends_on=("source_prompt",),
        edit_facts=attention_control.facts,
        paper="Mokady et al., arXiv 2211.09794",
        main_field="eta",
        title="NullText",
    )
)
