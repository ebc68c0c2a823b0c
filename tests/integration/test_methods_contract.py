"""The contract every registered method passes (docs/design.md, "The method contract").

Each method runs with its ``smoke`` preset (a few steps of every stage) so the suite stays fast; a
method added to the registry without one fails the suite on purpose.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from imagic_kit import available_methods, edit, get_method
from imagic_kit.artifacts import Fit
from imagic_kit.config import field_infos
from imagic_kit.errors import ArtifactMismatchError, ConfigError


def _smoke(method: str) -> dict:
    """The method's ``smoke`` preset (configs/methods/<method>/smoke.yaml): a few steps of every
    stage, the settings every test of a whole edit runs with."""
    from imagic_kit.config import configs_dir

    return yaml.safe_load((configs_dir() / "methods" / method / "smoke.yaml").read_text())


QUICK = {m: _smoke(m) for m in available_methods()}
#: A sample-stage change that must reuse the fit, per method.
SAMPLE_CHANGE = {
    "sdedit": {"guidance_scale": 3.0},
    "ddim": {"guidance_scale": 3.0},
    "imagic": {"eta": 1.0, "guidance_scale": 5.0},
    "pti": {"eta": 0.5},
    "fastedit": {"eta": 0.3, "guidance_scale": 2.0},
    "null-text": {"eta": 0.5},
    "decor": {"decor_strength": 0.5, "guidance_scale": 3.0},
}


def test_every_method_has_a_smoke_preset():
    from imagic_kit.config import preset_names

    for m in available_methods():
        assert "smoke" in preset_names(m) and QUICK[m], m


def px(img):
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(params=available_methods())
def method(request):
    return request.param


@pytest.fixture
def tiny(method, request):
    """The tiny random text-to-image model, or the embedded model for methods that need an image
    encoder and a CLIP (FastEdit)."""
    name = "shapes" if "image_encoder" in get_method(method).requires else "tiny_random"
    return request.getfixturevalue(name)


def _edit(tiny, scene_path, method, **kw):
    spec = get_method(method)
    extra = {"source_prompt": "a red circle"} if spec.source_prompt != "unused" else {}
    return edit(
        tiny,
        str(scene_path),
        "a blue circle",
        method=method,
        progress=False,
        **extra,
        **{**QUICK[method], **kw},
    )


def test_edit_returns_images_of_model_size(tiny, scene_path, method):
    r = _edit(tiny, scene_path, method, seed=0)
    assert r.image.size == (tiny.resolution, tiny.resolution) and r.image.mode == "RGB"
    assert r.timings["fit_s"] >= 0 and r.timings["sample_s"] > 0
    assert r.recipe["method"] == method and r.recipe["seed"] == 0 and r.recipe["config"]


def test_same_seed_same_image_other_seed_differs(tiny, scene_path, method):
    a, b = _edit(tiny, scene_path, method, seed=5), _edit(tiny, scene_path, method, seed=5)
    assert np.array_equal(px(a.image), px(b.image))


def test_reused_artifacts_equal_refit_and_round_trip(tiny, scene_path, method, tmp_path):
    first = _edit(tiny, scene_path, method, seed=1, save_artifacts=tmp_path / "fit")
    assert (tmp_path / "fit" / "run.json").is_file()
    loaded = Fit.load(tmp_path / "fit")
    assert loaded.meta["method"] == method and set(loaded.tensors) == set(first.fit.tensors)
    for k, v in first.fit.tensors.items():
        assert np.array_equal(loaded.tensors[k].numpy(), v.numpy())
    change = SAMPLE_CHANGE[method]
    reused = _edit(tiny, scene_path, method, seed=1, artifacts=tmp_path / "fit", **change)
    refit = _edit(tiny, scene_path, method, seed=1, **change)
    assert reused.recipe["fit_reused"] and reused.timings["fit_s"] == 0
    assert np.array_equal(px(reused.image), px(refit.image))


def test_artifacts_for_other_settings_are_refused(tiny, scene_path, method, tmp_path):
    _edit(tiny, scene_path, method, seed=1, save_artifacts=tmp_path / "fit")
    fit_fields = [
        i
        for i in field_infos(get_method(method).config_cls)
        if i.stage == "fit"
        and isinstance(i.default, int | float)
        and not isinstance(i.default, bool)
    ]
    if fit_fields:
        f = fit_fields[0]
        other = f.default + 1 if f.max is None or f.default + 1 <= f.max else f.default - 1
        if isinstance(f.default, float):
            other = f.default * 0.5 if f.default else 0.5
        with pytest.raises(ArtifactMismatchError, match=f.name):
            _edit(tiny, scene_path, method, seed=1, artifacts=tmp_path / "fit", **{f.name: other})
    other_img = tmp_path / "other.png"
    from conftest import draw_scene

    draw_scene(colour=(40, 170, 70)).save(other_img)
    with pytest.raises(ArtifactMismatchError, match="input_hashes"):
        _edit(tiny, other_img, method, seed=1, artifacts=tmp_path / "fit")


def test_empty_prompt_and_wrong_image_count(tiny, scene_path, method):
    with pytest.raises(ConfigError, match="prompt is empty"):
        edit(tiny, str(scene_path), "   ", method=method)
    spec = get_method(method)
    extra = {"source_prompt": "a red circle"} if spec.source_prompt != "unused" else {}
    if spec.max_images == 1:
        with pytest.raises(ConfigError, match="takes 1 input image"):
            edit(tiny, [str(scene_path)] * 2, "a blue circle", method=method, **extra)
    if spec.source_prompt == "required":
        with pytest.raises(ConfigError, match="needs --source-prompt"):
            edit(tiny, str(scene_path), "a blue circle", method=method)
