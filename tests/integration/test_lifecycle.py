"""The lifecycle every front end runs, through ``edit()``: checks before the work, wrong types
named, recipes that are valid JSON, warnings that point at the caller."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import photo_like
from PIL import Image

from imagic_kit import edit
from imagic_kit.errors import (
    ConfigError,
    InputImageError,
    ModelNotAvailableError,
)


def test_the_api_checks_the_artifacts_folder_before_the_fit(tiny, scene_path, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a saved fit"):
        edit(tiny, str(scene_path), "a blue circle", method="sdedit", seed=0, progress=False,
             save_artifacts=mine)  # fmt: skip
    assert (mine / "notes.txt").read_text() == "keep me"


def test_recipes_are_valid_json(tiny, scene_path, tmp_path):
    from imagic_kit.imaging import json_text, read_recipe

    r = edit(tiny, str(scene_path), "a blue circle", method="sdedit", seed=0, progress=False,
             num_inference_steps=2)  # fmt: skip
    path = r.save(tmp_path / "o.png")[0]
    assert read_recipe(path)["method"] == "sdedit"
    assert json.loads(json_text({"x": float("nan"), "y": [float("inf")]})) == {
        "x": "nan",
        "y": ["inf"],
    }
    Image.open(path).verify()


def test_the_api_names_wrong_types(tiny, scene_path, tmp_path):
    import os

    kw = dict(method="sdedit", seed=0, progress=False, num_inference_steps=2)
    for image in (5, None, b"png", torch.zeros(3)):
        with pytest.raises(InputImageError, match="must be a file path or a PIL image|array"):
            edit(tiny, image, "a blue circle", **kw)
    closed = Image.open(scene_path)
    closed.close()
    with pytest.raises(InputImageError):
        edit(tiny, closed, "a blue circle", **kw)
    arr = np.asarray(Image.open(scene_path).convert("RGB"))
    assert edit(tiny, arr, "a blue circle", **kw).image.size == (64, 64)  # arrays are fine
    for bad in ({"artifacts": 5}, {"artifacts": {}}, {"save_artifacts": 5}):
        with pytest.raises(ConfigError, match="must be a folder path"):
            edit(tiny, str(scene_path), "a blue circle", **kw, **bad)
    with pytest.raises(ConfigError, match="backbone must be a Backbone"):
        edit("tiny-random", str(scene_path), "a blue circle", **kw)
    for prompt in (5, ["red"]):
        with pytest.raises(ConfigError, match="prompt must be text"):
            edit(tiny, str(scene_path), prompt, **kw)
    from imagic_kit.models import load_backbone

    with pytest.raises(ConfigError, match="not a model dtype"):
        load_backbone("tiny-random", dtype=torch.int8)
    with pytest.raises(ConfigError, match="device"):
        load_backbone("tiny-random", device="xpu:9")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(InputImageError, match="not a regular file"):  # and does not hang
        edit(tiny, str(fifo), "a blue circle", **kw)
    with pytest.raises(ModelNotAvailableError, match="rank_clip"):  # at once, not after the fit
        edit(tiny, str(scene_path), "a blue circle", **kw, candidates=2, rank_clip=str(scene_path))


def test_a_photo_on_the_embedded_model_warns(shapes):
    from imagic_kit import edit

    fast = dict(method="sdedit", seed=0, num_inference_steps=2)
    with pytest.warns(UserWarning, match=r"does not look like the shapes world.*sd15") as seen:
        edit(shapes, photo_like(0), "a blue circle on a gray background", **fast)
    assert seen[0].filename == __file__  # the warning points at the caller's line
    from imagic_kit import SDEditPipeline
    from imagic_kit.errors import ImagicKitError

    pipe = SDEditPipeline.from_backbone(shapes)
    with pytest.warns(UserWarning, match=r"does not look like the shapes world") as seen:
        pipe(photo_like(1), "a blue circle on a gray background", seed=0, num_inference_steps=2)
    with pytest.raises(ImagicKitError, match="SDEditPipeline runs 'sdedit'; for another method"):
        pipe("assets/example.png", "a blue circle", method="ddim")
    assert seen[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        r = edit(shapes, "assets/example.png", "a blue circle on a gray background", **fast)
    assert r.recipe["device"] == "cpu" and r.recipe["dtype"] == "float32"
