"""What a newcomer meets first: a CLI that starts without the model stack, an offline hub that
fails at once, and warnings that say what happened (a photo on the embedded model, half
precision on the CPU, ddim without a caption)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from imagic_kit.errors import ConfigError, ModelNotAvailableError


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_help_and_recipe_do_not_import_torch(tmp_path):
    mods = _modules_after(
        "import imagic_kit.cli as c\nc.build_parser()\nfrom imagic_kit.imaging import read_recipe"
    )
    assert "imagic_kit.cli" in mods and "torch" not in mods and "diffusers" not in mods


def test_help_prints_without_torch():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imagic_kit", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "edit" in out.stdout
    assert "| torch\n" not in out.stderr and " torch\n" not in out.stderr


def test_package_names_still_load_on_use():
    import imagic_kit

    assert callable(imagic_kit.edit) and callable(imagic_kit.load_backbone)
    assert "edit" in dir(imagic_kit)
    with pytest.raises(AttributeError, match="no_such_name"):
        imagic_kit.no_such_name  # noqa: B018


def test_unreachable_hub_fails_at_once_with_the_copy_instructions(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc

    from imagic_kit import models
    from imagic_kit.models import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match=r"no connection to the hub.*--model DIR"):
        models.load_backbone("someorg/not-here", device="cpu")


def test_hub_probe_answers_false_for_a_closed_endpoint(monkeypatch):
    from imagic_kit.models import hub

    for v in hub._HUB_PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(hub, "_hub_answer", None)
    assert hub.hub_reachable(timeout=1.0) is False
    monkeypatch.setattr(hub, "_hub_answer", None)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub.hub_reachable() is True  # behind a proxy the hub is not probed
    monkeypatch.setattr(hub, "_hub_answer", None)


def _photo_like(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    g = rng.normal(0, 1, (6, 6, 3))
    im = Image.fromarray(np.uint8(np.clip(128 + 60 * g, 0, 255))).resize((64, 64), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(5):
        x, y = rng.integers(0, 60, 2)
        w, h = rng.integers(5, 25, 2)
        d.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im.filter(ImageFilter.GaussianBlur(1))


def test_scenes_look_like_the_shapes_world_and_photos_do_not():
    from imagic_kit.shapes import render
    from imagic_kit.shapes.oracle import looks_like_scene
    from imagic_kit.shapes.world import random_scenes

    assert all(looks_like_scene(render(s)[0]) for s in random_scenes(40, 3))
    assert not any(looks_like_scene(_photo_like(i)) for i in range(8))
    assert not looks_like_scene(Image.new("RGB", (64, 64), (120, 170, 230)))  # a sky, no object


def test_a_photo_on_the_embedded_model_warns(shapes):
    from imagic_kit import edit

    fast = dict(method="sdedit", seed=0, num_inference_steps=2)
    with pytest.warns(UserWarning, match=r"does not look like the shapes world.*sd15") as seen:
        edit(shapes, _photo_like(0), "a blue circle on a gray background", **fast)
    assert seen[0].filename == __file__  # the warning points at the caller's line
    from imagic_kit import SDEditPipeline
    from imagic_kit.errors import ImagicKitError

    pipe = SDEditPipeline.from_backbone(shapes)
    with pytest.warns(UserWarning, match=r"does not look like the shapes world") as seen:
        pipe(_photo_like(1), "a blue circle on a gray background", seed=0, num_inference_steps=2)
    with pytest.raises(ImagicKitError, match="SDEditPipeline runs 'sdedit'; for another method"):
        pipe("assets/example.png", "a blue circle", method="ddim")
    assert seen[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        r = edit(shapes, "assets/example.png", "a blue circle on a gray background", **fast)
    assert r.recipe["device"] == "cpu" and r.recipe["dtype"] == "float32"


def test_half_precision_on_the_cpu_warns():
    from imagic_kit import load_backbone

    with pytest.warns(UserWarning, match="bfloat16 on the CPU is several times slower"):
        load_backbone("tiny-random", device="cpu", dtype="bfloat16")


def test_ddim_without_a_source_prompt_says_what_it_used(tiny, scene_path):
    from imagic_kit import edit

    with pytest.warns(UserWarning, match="ddim: no source prompt.*empty prompt"):
        edit(tiny, scene_path, "a blue circle", method="ddim", seed=0, num_inference_steps=2)


def test_batch_set_reaches_rows_whose_method_has_the_field(tmp_path, scene_path):
    from imagic_kit.batch.manifest import read_manifest

    m = tmp_path / "m.csv"
    m.write_text(
        "image,prompt,method,candidates\n"
        f"{scene_path},a blue circle,sdedit,\n"
        f"{scene_path},a blue circle,ddim,\n"
        f"{scene_path},a blue circle,sdedit,3\n"
    )
    rows = read_manifest(m, 0, {"num_inference_steps": "4", "candidates": "2"})
    assert [r.config.num_inference_steps for r in rows] == [4, 4, 4]
    assert rows[0].config.candidates == 2 and rows[2].config.candidates == 3  # the cell wins
    assert not hasattr(rows[1].config, "candidates") and rows[1].error is None
    with pytest.raises(ConfigError, match="--set no_such_field: not a field of any method"):
        read_manifest(m, 0, {"no_such_field": "1"})
