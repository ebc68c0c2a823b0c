"""Imagic (Kawar et al., CVPR 2023, arXiv 2210.09276): text-embedding optimisation, fine-tuning,
interpolation.

    fit    1. e_tgt = text-encoder output of the target prompt (the whole token sequence, sec. 3.1).
              Optimise a copy e_opt with the denoising loss on the input image, model frozen,
              uniform timesteps, fresh noise each step (sec. 3.1, "text embedding optimization").
           2. Freeze e_opt; fine-tune the UNet on it with the same loss (sec. 3.2, "model
              fine-tuning"): a LoRA (on the ResNet convs by default) or the full UNet.
    sample 3. From fresh noise, classifier-free guidance against the empty prompt, condition
              e = eta * e_tgt + (1 - eta) * e_opt (sec. 3.3, "text embedding interpolation").
              eta = 0 reproduces the input, eta = 1 is the plain target text. The sampler is
              DDIM with stochasticity ``ddim_eta`` (0 deterministic, 1 DDPM-like; default 0.5).
              The toolkit's additions (``paper`` turns all three off): the fine-tuning runs at
              ``finetune_late_strength`` (0.7) after the first ``finetune_late_start`` (30%) of
              the steps; the best of ``candidates`` (16) samples is kept (ranking.py); the pixels
              the edit left alone are copied back from the input (``restore_unedited`` 0.12,
              restore.py; the candidates are ranked as generated, then returned restored).

Legend: ``e_tgt`` = e_tgt, ``e_opt`` = e_opt (paper notation), ``eta`` = eta.

Presets (``configs/methods/imagic/``): ``paper`` is the SD recipe the paper reports (1000 embedding
steps at lr 2e-3, 1500 full fine-tune steps at lr 5e-7, batch 1; secondary source), ``balanced`` is the
default LoRA recipe, ``fast`` trades some success for speed. Quick suite (12 edits, seed 0, eta
1.0, ddim_eta 0.5, 2-core CPU, two processes): paper (one sample, late strength 1, no restore;
session 10) 0% (target attributes 12/12, but the object moved in 11; fit 87 s on session 10's
faster machine), balanced (best of 16, restored; session 13) 83% (fit 61 s, sample 8.6 s), fast
(best of 4, restored) 75% (fit 21 s, sample 2.5 s; 67% without the restore). On the quick suite one
edit is worth 8 points: on the full suite balanced scores 85%, fast 54% (session 11, the previous
ranking, no restore).

Defaults, as measured on the shapes world (tiny-shapes, 2-core CPU, one thread per process, two
processes sharing the CPU; the README has the tables):
- LoRA rank 16 (alpha 16) on the ResNet convs only (conv1, conv2), no attention projection. The
  usual SD LoRA targets the attention projections; on tiny-shapes an attention-only LoRA left the
  reconstruction at ~18 dB with wrong colours (its UNet has no attention at the top resolution),
  and attention + convs (the previous default) changed how the colour words are drawn: the
  cross-attention's to_k/to_v map each prompt token to what it draws, the LoRA fitted them to the
  input under e_opt (which starts from e_tgt), and at eta 1 colour edits drew a third colour
  (blue -> red came out green, red -> blue green, yellow -> green red; 0 of those 4 full-suite
  edits at seed 0). With the convs only, the prompt is read as pretrained and the LoRA keeps the
  layout and texture: on those 4 edits, seeds 0-2, target attributes 11/12 at eta 1.2 (excluding
  only the cross-attention's to_k/to_v: 6/12). Full suite: see "Known shortfall" below. Full
  fine-tuning at lr 1e-4 broke the model; at 3e-5 x 800 steps it kept the layout less often than
  the LoRA.
- 400 embedding steps at lr 5e-3: e_opt must move far enough from e_tgt for the interpolation to
  mean something (100 steps: no edit appeared at eta <= 1.5; 1000 steps at 2e-3 helped background
  edits, 2 of 4 samples against 0 of 4 with 400, but cost ~90 s more).
- 600 LoRA steps at lr 2e-3 with cosine decay, batch 4: a constant 2e-3 sometimes wrecked the
  reconstruction (one scene came back as a grey circle 30 px away, 10 dB), the cosine decay kept it
  (eta 0: in place, 19.5 dB). (Then, on the earliest machine: fit ~93 s median, one sample ~1.9 s,
  peak ~480 MB; current timings in the README.) 1000 steps: on 14 full-suite edits the same success as 600 (with the
  previous targets).
- The fitting loss is weighted like a v-prediction loss (``loss_weighting="v"``: 1/abar_t times the
  standard eps loss, capped at 20), in both stages. The paper uses the plain eps loss; on the shapes
  world it under-weights the noisy timesteps that decide the layout and the smooth background
  texture, and tiny-shapes' VAE is ~5x more sensitive to latent error on black backgrounds (a 0.05
  latent perturbation moves the decoded pixels 3.6 grey levels RMS on black, 0.7 on white or gray),
  so black-background textures came back at ~20-23 dB. On 4 full-suite colour/shape edits (seeds 0-2,
  eta 1.0) the v weighting raised success from 4/12 to 8/12 and the eta-0 reconstruction of black
  scenes by ~2.5 dB (x0 weighting, or a cap of 100, measured the same). ``paper`` keeps the eps loss.
- Guidance 5 (the model card's text-to-image optimum; at 3 red did not appear on a test scene).
- Best of 16 (``candidates=16``, sample-stage; ``imagic_kit/ranking.py``): 16 samples from the one
  fit; the one kept has the highest sum of z-scores (over the 16) of its CLIP score to the target
  prompt (weight 1), its outline similarity to the input (``structure_weight=0.5``) and its
  fidelity to the input, the PSNR over the best-matching half of its pixels
  (``fidelity_weight=0.25``) (``rank_by="clip+structure+fidelity"``). The toolkit's
  addition, not the paper's step (``paper`` samples once): which samples of one fit succeed is
  largely the seed's luck (two full-suite seeds agreed on 17 of 28 successful edits; the public
  implementations note that the best eta differs per seed). The number and the first two terms
  were chosen on the quick suite (32 candidates per edit at eta 0.8 / 1.0 / 1.2, every subset of N
  drawn 400 times: at eta 1.0 one sample succeeds 61%, the best of 16 by CLIP alone 71%, by
  outlines alone 69%, by CLIP + 0.5 outlines 79%, an oracle 83%; 4 / 8 / 16 candidates 71 / 75 /
  79%; docs/bench/best-of-n-2026-11-28/). The fidelity term was chosen on candidates the oracle
  judged (``bench --judge-candidates``, ``scripts/rerank.py``; docs/bench/ranking-fidelity-2026-11-29/):
  full suite, seeds 1-2 on a GPU, picks that succeed 52 of 67 against 47 without it (weights
  0.5-1.0 / 0.125-0.5 all 51-53); then seed 0 on the CPU, not used for the choice, 38 of 48
  against 36; an oracle picking among the same 16 would reach 43. 32 candidates: no gain (the
  oracle stays at 43). Sample time 0.86 s -> 5.65 s for 16 at 50 steps on session 11's machine
  (9.2 s on session 12's slower one), peak memory ~520 -> ~545 MB; on an H200 at 512 px 2.5 s ->
  8.1 s and 5.9 -> 10.5 GB (docs/bench/sd15-random-h200-2026-11-29/).
- The unedited pixels copied back from the input (``restore_unedited=0.12``, sample-stage;
  ``imagic_kit/restore.py``): where a candidate differs from the input by less than 0.06 (RMS,
  fraction of the full range, lightly blurred) the input's own pixel is returned, above 0.12 the
  generated one, blended in between, the edited region grown by 2 px and feathered. A kept
  background came back from the LoRA at 23-25 dB (texture drift), under the benchmark's 25 dB bar
  even where the edit itself was right: 3 of seed 0's 10 failures at the previous defaults. On the
  full suite (judged candidates; docs/bench/restore-2026-11-30/) successful candidates 407 -> 495
  of 768 at seed 1, picks 38 -> 41 of 48 at seed 0 and 39 -> 40 at seed 1, no edit lost at eta 1;
  at seed 1 the thresholds 0.06-0.2 all give 40, 0.04 39 (drift left), 0.3 38 (edits undone). The
  candidates are ranked as generated: ranked after the restore, most of them copy their
  best-matching half from the input and tie on the fidelity term, and the pick moved the object in
  two edits (39 of 48 at seed 0). It suits local edits; for global ones (lighting, style) use 0.
- The fine-tuning weakened in the late sampling steps (``finetune_late_strength`` 0.7 from
  ``finetune_late_start`` 0.3 of the steps on; the toolkit's choice, ``paper`` keeps 1): at full
  strength the LoRA pulls the low-noise steps back to the input's details, colours included, so colour
  edits drew the in-between "third colour" (red -> blue came out green in 32 of 32 candidates). The
  noisiest 30% of the steps, which set the layout, keep the fit as it is; after them the LoRA's scale
  is 0.7 (a full fine-tune is blended with the pretrained weights). Chosen by sampling the saved fits
  (seed 0, eta 1.0, 16 candidates): on 19 full-suite edits (the 11 that failed in every candidate and
  8 others) successful candidates 112 -> 142 of 304, successful picks 7 -> 11; switching the LoRA off
  for the last half fixed the colour (13/16) but dropped keep-background edits under the 25 dB bar
  (colour-00 16 -> 1 of 16); 0.5 from half way: 142 / 11 but fewer on the quick suite (98 vs 117 of
  192 candidates; picks 10-11 / 8-9 of 12 for the schedules tried, 9 / 9 at strength 1). Full
  suite, with the ranking of the time (clip+structure): 75% (67% at strength 1), target attributes
  100% (88%), background kept 76% (83%) (docs/bench/late-strength-2026-11-28/); with the current
  three-term ranking 79%.
- eta = 1.0 with best of 16 (full suite, late strength 0.7: 79% at eta 1.0, 75% at 0.8, 71% at
  1.2, 48% at 0.6; the previous ranking 75 / 73 / 62 / 50%. At late strength 1: full suite 67 / 69
  / 62% at 1.0 / 0.8 / 1.2, quick suite 79 / 78 / 66%). ddim_eta = 0.5 (DDIM with half the DDPM
  noise at each step), both sample-stage, chosen (as eta 0.8 then, one sample per edit) on the quick suite with 4 sample seeds per edit
  (48 samples a setting): success at eta 0.8 / 1.0 / 1.2 with deterministic DDIM 54 / 52 / 48%,
  ddim_eta 0.5 62 / 58 / 54%, ddim_eta 1.0 60 / 62 / 60% (0.5 at 0.8 ties 1.0 at 1.0 and keeps the
  position more often, 40 vs 36 of 48).
  Why stochastic sampling: with deterministic DDIM the initial noise leaves its imprint to the end,
  as speckle on dark textures (eta-0 reconstructions of black scenes varied 20-26 dB with the seed);
  fresh noise at each step lets the fine-tuned model pull the sample back to the input it learned.
  On 2 black-background full-suite edits (seeds 0-3, eta 0.8) success went from 3/4 and 0/4 to
  4/4 and 4/4 with ddim_eta 1. No gain from: 100 or 200 DDIM steps (< 0.5 dB), zero-mean initial
  noise, the base UNet for t < 100-400 (worse by 0.5-2 dB). The behaviour test's colour edit (blue
  circle -> red) is red and in place at eta 0.8 for seeds 0-4 with ddim_eta 0, 0.5 and 1 (at eta
  0.6 with deterministic DDIM: green or nothing for 4 of 5). (With the previous attention + conv
  LoRA, eta 1.0 led the single-seed quick suite: 42/58/58/50% at eta 0.8/1.0/1.2/1.4.)
Full suite (seed 0; docs/bench/restore-2026-11-30/): 85% (41 of 48) at the defaults (best of 16
at eta 1.0, late strength, three-term ranking, unedited pixels restored; 79% at eta 0.8 and 1.2, 48%
at 0.6; sdedit 25%, ddim 17%). Without the restore it was 79% (38 of 48; 75 / 71 / 48% at eta 0.8 /
1.2 / 0.6; docs/bench/ranking-fidelity-2026-11-29/). Seed 1 (fit and sample): 83% (40 of 48; 81%
without the restore). The 7 failures at seed 0: 4 edits whose background changes to or from black
(the object moves or the target is missed: background-01, -02, -04, two-01), two-08 (moved),
shape-05 and shape-09 (size). Some candidate of the 16 succeeds in 43 edits: background-02 and
two-08 are the ranking's misses, the other 5 fail in every one of 32 candidates. The previous
ranking (clip+structure) picked 36 (75%) at both seeds without the restore. At strength 1 (session
10): 67%; among 32 candidates per edit 37 of 48 edits had a successful one.
With one sample per edit: 54% at eta 1.0, 58% at 0.8 (at strength
1: 52% and 50%); with the previous decoder 52% at eta 0.8
(seed 1: 42%; eta 1.0: 54%, seed 1: 52%; deterministic DDIM at eta 0.8: 46%; previous LoRA
targets, attention + convs: 38%; eps loss 23%; sdedit 23%, ddim 17%).
The decoder trained on noisy latents (docs/bench/decoder-2026-11-28/) fixed part of the speckle on
black backgrounds but not the suite: 98 of 192 samples over four settings against 99. What fails
with one sample at eta 0.8 (previous decoder): edits that change the background (50%; two attributes
50%): the object moves 10-25 px or is redrawn as another shape when the background colour changes;
shape edits (50%): black-background textures still at 22-23 dB (3 of 12), the new shape 6-7 px off
(2); colour edits (58%): a third colour (green) instead of the target (3 of 12), the object lost
(1), a black texture at 24.6 dB (1).
Also tried without gain (quick suite x 4 seeds; README): the LoRA on the up-block or the
top-resolution convs only, rank 4, 300 LoRA steps, 1000 embedding steps at 2e-3, full fine-tuning at
lr 1e-5 / 3e-5 / 1e-4, a two-level eta schedule, e_opt as guidance's negative embedding, batch 8;
in session 8: guidance 1-3, LoRA rank 1 / 2, the LoRA's latent channel means tied to the base model,
the eps loss for the embedding stage, the embedding lr 2e-3 on the full suite.
Why single samples failed (session 8, one sample per edit;
docs/bench/imagic-2026-11-28/why-edits-fail.md): the best of the six eta x ddim_eta settings,
chosen per edit, would reach only 71%; background edits that involve a black background succeed
2 of 13 times (others 6 of 6): the LoRA keeps the input's texture and context, and on a black ground
the model draws them as fragments of the object; and the linear interpolation passes through the
in-between category (red -> green -> blue, white -> gray -> black), where the fine-tuned model's
pull towards the input often leaves the sample.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..artifacts import Fit
from ..config import param
from ..errors import ArtifactMismatchError
from ..lora import (
    ADAPTER,
    CONV_TARGETS,
    LoraSpec,
    lora_applied,
    lora_state_dict,
    lora_training,
)
from ..optim import LOSS_WEIGHTINGS, SCHEDULES, denoising_loss, full_training, lr_schedule, optimize
from ..registry import MethodSpec, register_method
from ..sampling import ddim_sample
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
class ImagicConfig:
    embedding_steps: int = param(
        400, help="steps of text-embedding optimisation (sec. 3.1)", stage="fit", min=0, max=100_000
    )
    embedding_lr: float = param(
        5e-3, help="Adam learning rate for the embedding", stage="fit", min=0.0, max=1.0
    )
    finetune: str = param(
        "lora",
        help="fine-tune the UNet with a LoRA, fully, or not at all",
        stage="fit",
        choices=["lora", "full", "none"],
    )
    finetune_steps: int = param(
        600, help="UNet fine-tuning steps (sec. 3.2)", stage="fit", min=0, max=100_000
    )
    finetune_lr: float = param(
        2e-3,
        help="learning rate of the fine-tuning (LoRA ~1e-4..1e-3, full ~1e-6)",
        stage="fit",
        min=0.0,
        max=1.0,
    )
    finetune_schedule: str = param(
        "cosine",
        help="learning-rate schedule of the fine-tuning: constant, or cosine decay to 0",
        stage="fit",
        choices=list(SCHEDULES),
    )
    lora_rank: int = param(16, help="LoRA rank", stage="fit", min=1, max=512)
    lora_alpha: float = param(16.0, help="LoRA alpha (scale = alpha / rank)", stage="fit", min=0.0)
    lora_targets: list = param(
        list(CONV_TARGETS),
        help="UNet modules that get a LoRA (comma list; to_q,to_k,to_v,to_out.0 = the attention "
        "projections, the usual SD LoRA)",
        stage="fit",
    )
    loss_weighting: str = param(
        "v",
        help="timestep weighting of the fitting loss: eps (the paper's standard loss), or v / x0 "
        "(weigh noisy timesteps more: the input's layout and smooth texture are kept more precisely)",
        stage="fit",
        choices=list(LOSS_WEIGHTINGS),
    )
    loss_weight_cap: float = param(
        20.0, help="upper bound of the v / x0 loss weights (relative to eps)", stage="fit", min=1.0
    )
    batch_size: int = param(
        4, help="noise samples of the input image per optimisation step", stage="fit", min=1, max=64
    )
    gradient_checkpointing: bool = param(
        False, help="trade compute for memory on large UNets", stage="fit"
    )
    eta: float = param(
        1.0,
        help="interpolation weight: 0 reproduces the input, 1 is the target text (sec. 3.3)",
        stage="sample",
        min=-1.0,
        max=3.0,
    )
    finetune_late_strength: float = param(
        0.7,
        help="strength of the fine-tuning in the late, low-noise sampling steps (the LoRA's scale, "
        "or the fine-tuned UNet's share of a blend with the pretrained one): 1 = as fitted, as in "
        "the paper; lower lets the pretrained model draw the prompt's details",
        stage="sample",
        min=0.0,
        max=2.0,
    )
    finetune_late_start: float = param(
        0.3,
        help="fraction of the sampling steps, from the noisy end, run at full fine-tuning strength "
        "before finetune_late_strength applies",
        stage="sample",
        min=0.0,
        max=1.0,
    )
    guidance_scale: float = guidance_scale(5.0)
    num_inference_steps: int = num_inference_steps(50)
    num_images_per_prompt: int = num_images_per_prompt(1)
    ddim_eta: float = ddim_eta(0.5)
    candidates: int = candidates(16)
    rank_by: str = rank_by("clip+structure+fidelity")
    structure_weight: float = structure_weight(0.5)
    fidelity_weight: float = fidelity_weight(0.25)
    rank_clip: str = rank_clip("")
    restore_unedited: float = restore_unedited(0.12)


def fit(backbone, inputs, config: ImagicConfig, generator, progress) -> Fit:
    z0 = backbone.encode_latents(inputs.pixels[:1]).float()
    batch = z0.expand(config.batch_size, -1, -1, -1)
    e_tgt = backbone.encode_prompt(inputs.prompt).float()
    if config.gradient_checkpointing:
        backbone.enable_gradient_checkpointing()

    def loss(cond):
        return denoising_loss(
            backbone,
            batch,
            cond,
            generator,
            weighting=config.loss_weighting,
            weight_cap=config.loss_weight_cap,
        )

    # 1. text-embedding optimisation, model frozen
    e_opt = e_tgt.clone().requires_grad_(True)
    if config.embedding_steps > 0:
        optimize(
            [e_opt],
            lambda step: loss(e_opt),
            steps=config.embedding_steps,
            lr=config.embedding_lr,
            progress=progress,
            stage="embedding",
            what="the text embedding",
        )
    e_opt = e_opt.detach()
    fit = Fit(tensors={"e_tgt": e_tgt.cpu(), "e_opt": e_opt.cpu()})

    # 2. model fine-tuning on e_opt
    if config.finetune == "none" or config.finetune_steps == 0:
        return fit
    lora = config.finetune == "lora"
    if lora:
        spec = LoraSpec(
            rank=config.lora_rank, alpha=config.lora_alpha, target_modules=list(config.lora_targets)
        )
        trainable = lora_training(backbone.unet, spec, generator)
    else:
        trainable = full_training(backbone.unet)
    with trainable as params, backbone.train_mode():
        optimize(
            params,
            lambda step: loss(e_opt),
            steps=config.finetune_steps,
            lr=config.finetune_lr,
            lr_fn=lr_schedule(config.finetune_schedule, config.finetune_lr, config.finetune_steps),
            progress=progress,
            stage=f"finetune-{config.finetune}",
            what="the LoRA weights" if lora else "the UNet weights",
        )
        if lora:
            fit.lora, fit.lora_spec = lora_state_dict(backbone.unet), spec
        else:
            fit.unet_state = {
                k: v.detach().to(backbone.dtype).cpu().clone()
                for k, v in backbone.unet.state_dict().items()
            }
    return fit


@contextlib.contextmanager
def _weights(unet: torch.nn.Module, state: dict[str, torch.Tensor] | None):
    """Swap in fine-tuned UNet weights for the duration of a ``with`` block; yields
    ``blend(s)``, which sets the weights to pretrained + s * (fine-tuned - pretrained)."""
    if state is None:
        yield lambda s: None
        return
    original = {k: v.detach().cpu().clone() for k, v in unet.state_dict().items()}
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        unet.load_state_dict(original)
        raise ArtifactMismatchError(
            "the saved fine-tuned UNet does not fit this model; refit without --artifacts"
        )

    @torch.no_grad()
    def blend(strength: float) -> None:
        # in place, one tensor at a time on the UNet's device: no second copy of a large UNet
        for k, p in unet.state_dict().items():
            if k in state and p.is_floating_point():
                lo, hi = (t[k].to(p.device, torch.float32) for t in (original, state))
                p.copy_(torch.lerp(lo, hi, strength))

    try:
        yield blend
    finally:
        unet.load_state_dict(original)


def sample(backbone, fit: Fit, inputs, config: ImagicConfig, generator, progress) -> torch.Tensor:
    dev = backbone.device
    e_tgt, e_opt = fit.tensor("e_tgt", dev), fit.tensor("e_opt", dev)
    cond = config.eta * e_tgt + (1.0 - config.eta) * e_opt
    n = config.num_images_per_prompt
    x = backbone.randn(backbone.latent_shape(n), generator)
    with (
        lora_applied(backbone.unet, fit.lora, fit.lora_spec),
        _weights(backbone.unet, fit.unet_state) as blend,
    ):
        late_from = round(config.finetune_late_start * config.num_inference_steps)
        strength = config.finetune_late_strength

        def before_step(j: int) -> None:
            # the late steps: weaken the fine-tuning once (a LoRA is rescaled, a full fine-tune blended)
            if j != late_from or strength == 1.0:
                return
            if fit.lora is not None:
                backbone.unet.set_adapters([ADAPTER], weights=[strength])
            else:
                blend(strength)

        return ddim_sample(
            backbone,
            x,
            cond,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            eta=config.ddim_eta,
            generator=generator,
            progress=progress,
            before_step=before_step,
        )


register_method(
    MethodSpec(
        name="imagic",
        description="Imagic: optimise the text embedding, fine-tune the UNet (LoRA or full), interpolate",
        config_cls=ImagicConfig,
        fit=fit,
        sample=sample,
        fit_depends_on=("prompt",),
        paper="Kawar et al., arXiv 2210.09276",
    )
)
