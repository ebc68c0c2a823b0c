"""Prompt Tuning Inversion and null-text inversion: the shared per-step tuning, reconstruction,
the saved fit and its reuse rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagic_kit import edit, load_backbone
from imagic_kit.bench.metrics import psnr
from imagic_kit.errors import (
    ArtifactMismatchError,
    ConfigError,
)
from imagic_kit.imaging import pil_to_tensor, tensor_to_pil
from imagic_kit.inversion import TunedInversionConfig, tune_schedule
from imagic_kit.registry import make_config
from imagic_kit.sampling import schedule
from imagic_kit.shapes import Scene, render

FAST = {"num_inference_steps": 10}
TUNED_FAST = {"tune_lr": 0.02}  # 10 steps are five times coarser than the defaults' 50
QUICK = {"num_inference_steps": 4, "tune_steps": 2}


def test_tune_schedule_is_null_texts_over_50_steps():
    cfg = TunedInversionConfig()
    for j in (0, 1, 25, 49):
        lr, bound = tune_schedule(cfg, j, 50)
        assert lr == pytest.approx(1e-2 * (1 - j / 100))
        assert bound == pytest.approx(1e-5 + j * 2e-5)


def _scenes():
    return [
        render(Scene("circle", "red", "gray", 14, 18, 26, 3))[0],
        render(Scene("square", "blue", "white", 24, 10, 22, 5))[0],
    ]


def _reconstruction_psnr(backbone, img, caption, method, **kw):
    r = edit(backbone, img, caption, method=method, source_prompt=caption, seed=0, progress=False,
             **FAST, **kw)  # fmt: skip
    return psnr(np.asarray(img), np.asarray(r.image))


def test_tuned_inversions_reconstruct_where_ddim_drifts(shapes):
    """On the embedded model at 10 steps: PTI at eta 0 and null-text on its source prompt come
    within 1.5 dB of the VAE's own reconstruction (at the default 50 steps the benchmark's
    reconstruct suite measures within 1 dB); DDIM inversion resampled with guidance is at least
    5 dB worse."""
    captions = ["a red circle on a gray background", "a blue square on a white background"]
    for img, caption in zip(_scenes(), captions, strict=True):
        with torch.no_grad():
            vae = tensor_to_pil(shapes.decode_latents(shapes.encode_latents(pil_to_tensor(img))))[0]
        p_vae = psnr(np.asarray(img), np.asarray(vae))
        p_pti = _reconstruction_psnr(shapes, img, caption, "pti", eta=0.0, **TUNED_FAST)
        p_null = _reconstruction_psnr(shapes, img, caption, "null-text", **TUNED_FAST)
        p_ddim = _reconstruction_psnr(shapes, img, caption, "ddim")
        assert p_pti > p_vae - 1.5 and p_null > p_vae - 1.5, (p_vae, p_pti, p_null)
        assert min(p_pti, p_null) > p_ddim + 5, (p_pti, p_null, p_ddim)


@pytest.mark.parametrize("method", ["pti", "null-text"])
def test_v_prediction_and_half_precision(tiny_v, scene_path, method):
    """The tuning goes through the v-prediction step; embeddings stay float32 on a bf16 UNet."""
    kw = dict(seed=0, progress=False, source_prompt="a red circle", **QUICK)
    r = edit(tiny_v, str(scene_path), "a blue circle", method=method, **kw)
    assert r.image.size == (64, 64)
    bf16 = load_backbone("tiny-random", device="cpu", dtype="bfloat16")
    r = edit(bf16, str(scene_path), "a blue circle", method=method, **kw)
    emb = r.fit.tensors["embeddings"]
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()
    assert emb.shape[0] == len(r.fit.tensors["timesteps"]) == 4


@pytest.mark.parametrize("method", ["pti", "null-text"])
def test_tuning_retraces_the_pivots_on_a_v_model(tiny_v, scene_path, method):
    """In latent space: the fit sampled at eta 0 ends nearer the input's latent than untuned
    guided DDIM from the same inversion does."""
    from imagic_kit.api import EditInputs
    from imagic_kit.imaging import load_image
    from imagic_kit.progress import SILENT
    from imagic_kit.registry import get_method
    from imagic_kit.sampling import ddim_invert, ddim_sample

    img = load_image(str(scene_path))
    pixels = pil_to_tensor(img)
    inputs = EditInputs([img], pixels, "a red circle", "a red circle", ["-"])
    spec = get_method(method)
    cfg = make_config(method, num_inference_steps=6, tune_steps=20, tune_tolerance=0.0, eta=0.0)
    fit = spec.fit(tiny_v, inputs, cfg, None, SILENT)
    tuned = spec.sample(tiny_v, fit, inputs, cfg, None, SILENT)
    z0 = tiny_v.encode_latents(pixels)
    cond = tiny_v.encode_prompt("a red circle")
    traj = ddim_invert(tiny_v, z0, cond if method == "null-text" else tiny_v.uncond_embedding(),
                       num_inference_steps=6)  # fmt: skip
    plain = ddim_sample(tiny_v, traj[-1], cond, num_inference_steps=6, guidance_scale=7.5)
    err, drift = (tuned - z0).pow(2).mean(), (plain - z0).pow(2).mean()
    assert err < 0.5 * drift, (float(err), float(drift))


@pytest.mark.parametrize("method", ["pti", "null-text"])
@pytest.mark.parametrize("field,value", [("guidance_scale", 5.0), ("num_inference_steps", 5)])
def test_saved_fit_refuses_other_guidance_or_steps(
    tiny, scene_path, tmp_path, method, field, value
):
    kw = dict(seed=0, progress=False, source_prompt="a red circle", **QUICK)
    edit(tiny, str(scene_path), "a blue circle", method=method, save_artifacts=tmp_path / "f", **kw)
    with pytest.raises(ArtifactMismatchError, match=field):
        edit(
            tiny,
            str(scene_path),
            "a blue circle",
            method=method,
            artifacts=tmp_path / "f",
            **{**kw, field: value},
        )


def test_pti_new_target_reuses_the_fit_unless_the_inversion_used_it(tiny, scene_path, tmp_path):
    kw = dict(seed=0, progress=False, **QUICK)
    edit(tiny, str(scene_path), "a blue circle", method="pti", save_artifacts=tmp_path / "f", **kw)
    r = edit(tiny, str(scene_path), "a green square", method="pti", artifacts=tmp_path / "f", **kw)
    assert r.recipe["fit_reused"] and r.recipe["prompt"] == "a green square"
    edit(
        tiny,
        str(scene_path),
        "a blue circle",
        method="pti",
        save_artifacts=tmp_path / "g",
        inversion_prompt="target",
        **kw,
    )
    with pytest.raises(ArtifactMismatchError, match="prompt"):
        edit(
            tiny,
            str(scene_path),
            "a green square",
            method="pti",
            artifacts=tmp_path / "g",
            inversion_prompt="target",
            **kw,
        )


def test_pti_source_inversion_needs_a_source_prompt(tiny, scene_path):
    with pytest.raises(ConfigError, match="source-prompt"):
        edit(
            tiny,
            str(scene_path),
            "a blue circle",
            method="pti",
            inversion_prompt="source",
            progress=False,
            **QUICK,
        )


def test_null_text_needs_a_source_prompt(tiny, scene_path):
    with pytest.raises(ConfigError, match="source"):
        edit(tiny, str(scene_path), "a blue circle", method="null-text", progress=False, **QUICK)


def test_fit_from_another_schedule_is_refused(tiny, scene_path):
    kw = dict(seed=0, progress=False, **QUICK)
    r = edit(tiny, str(scene_path), "a blue circle", method="pti", **kw)
    r.fit.tensors["timesteps"] = r.fit.tensors["timesteps"] + 1
    with pytest.raises(ArtifactMismatchError, match="timesteps"):
        edit(tiny, str(scene_path), "a blue circle", method="pti", artifacts=r.fit, **kw)


def test_progress_reports_steps_and_inner_iterations(tiny, scene_path):
    events = []
    edit(
        tiny,
        str(scene_path),
        "a blue circle",
        method="pti",
        seed=0,
        progress=False,
        callback=lambda stage, step, total, info: events.append((stage, step, total, info)),
        **QUICK,
    )
    tuning = [e for e in events if e[0] == "fit/tune-cond"]
    assert [e[1] for e in tuning] == [1, 2, 3, 4] and all(e[2] == 4 for e in tuning)
    assert all(1 <= e[3]["inner"] <= 2 and "loss" in e[3] for e in tuning)
    assert any(e[0] == "fit/invert" for e in events)
    assert any(e[0].endswith("sample") for e in events)


def test_pti_candidates_spread_over_eta_start_across_batches(tiny, scene_path):
    """Candidate j of n starts eta at eta_start * j / (n - 1): the first is the paper's edit (eta at
    every step), the last a single sample at eta_start, also across draw()'s batches of 8."""
    kw = dict(seed=0, progress=False, restore_unedited=0.0, **QUICK)
    fit = edit(tiny, str(scene_path), "a blue circle", method="pti", candidates=1, **kw).fit
    many = edit(tiny, str(scene_path), "a blue circle", method="pti", artifacts=fit,
                candidates=10, eta_start=0.5, **kw)  # fmt: skip
    first = edit(tiny, str(scene_path), "a blue circle", method="pti", artifacts=fit,
                 candidates=1, eta_start=0.0, **kw)  # fmt: skip
    last = edit(tiny, str(scene_path), "a blue circle", method="pti", artifacts=fit,
                candidates=1, eta_start=0.5, **kw)  # fmt: skip
    px = [np.asarray(im, dtype=np.int16) for im in (many.candidates[0], many.candidates[9])]
    assert np.abs(px[0] - np.asarray(first.image, dtype=np.int16)).max() <= 2
    assert np.abs(px[1] - np.asarray(last.image, dtype=np.int16)).max() <= 2
    assert np.abs(px[0] - px[1]).max() > 2  # they differ: the spread is real


def test_the_most_steps_allowed_run(tiny, scene_path):
    """1000 DDIM steps (the field's maximum) at strength 1: the SD scheduler config would place the
    first at t = 1000, one past the model's last trained timestep."""
    sch = schedule(tiny, 1000, 1.0)
    assert all(0 <= t < tiny.num_train_timesteps for t in sch.timesteps)
    assert len(set(sch.timesteps)) == len(sch.timesteps) == 999
    assert schedule(tiny, 50, 1.0).timesteps == schedule(tiny, 50, 0.999).timesteps
    # ddim: the inversion and the sampling both walk the 1000 steps
    r = edit(tiny, str(scene_path), "a blue circle", method="ddim", seed=0, progress=False,
             num_inference_steps=1000, strength=1.0)  # fmt: skip
    assert np.isfinite(np.asarray(r.image, dtype=float)).all()


def test_ddim_without_a_source_prompt_says_what_it_used(tiny, scene_path):
    from imagic_kit import edit

    with pytest.warns(UserWarning, match="ddim: no source prompt.*empty prompt"):
        edit(tiny, scene_path, "a blue circle", method="ddim", seed=0, num_inference_steps=2)
