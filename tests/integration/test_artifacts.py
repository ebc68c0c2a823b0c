"""Saved fits: damaged or foreign folders refused, the previous format read, a save that never
deletes the user's files and replaces a fit as a whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imagic_kit import edit
from imagic_kit.artifacts import Fit
from imagic_kit.errors import (
    ArtifactMismatchError,
    ConfigError,
)


@pytest.fixture
def saved_fit(tiny, scene_path, tmp_path):
    kw = dict(method="imagic", seed=0, progress=False, embedding_steps=2, finetune_steps=2,
              num_inference_steps=2, candidates=1, batch_size=1)  # fmt: skip
    folder = tmp_path / "fit"
    r = edit(tiny, str(scene_path), "a blue circle", save_artifacts=folder, **kw)
    return folder, kw, r


def test_damaged_or_foreign_artifacts_are_refused(tiny, scene_path, saved_fit):
    folder, kw, first = saved_fit
    again = edit(tiny, str(scene_path), "a blue circle", artifacts=folder, **kw)
    assert np.array_equal(np.asarray(again.image), np.asarray(first.image))

    lora = folder / "unet_lora.safetensors"
    good = lora.read_bytes()
    lora.write_bytes(b"\xff" * 8 + good[8:])  # a bad safetensors header
    with pytest.raises(ArtifactMismatchError, match="not the file its run.json"):
        Fit.load(folder)
    lora.write_bytes(good)

    run = folder / "run.json"
    meta = json.loads(run.read_text())
    for text in ("[]", '"a string"', "{}", "{not json", "[" * 100000 + "]" * 100000):
        run.write_text(text)
        with pytest.raises(ArtifactMismatchError, match="run.json|valid JSON"):
            Fit.load(folder)
    for change in (
        {"files": {"embeddings.safetensors": "abc"}},  # not a listing
        {"files": None},  # no listing: every check would be off
        {"format_version": 99},
    ):
        run.write_text(json.dumps({**meta, **change}))
        with pytest.raises(ArtifactMismatchError, match="list its files|fit format"):
            Fit.load(folder)
    run.write_text(json.dumps(meta))

    # a file swapped in from another fit, or a stray one beside the listed ones
    from safetensors.torch import load_file, save_file

    emb = folder / "embeddings.safetensors"
    original = emb.read_bytes()
    tensors = load_file(str(emb))
    save_file({**tensors, "e_opt": tensors["e_opt"] * 2}, str(emb))
    with pytest.raises(ArtifactMismatchError, match="not the file its run.json"):
        Fit.load(folder)
    emb.write_bytes(original)
    save_file(tensors, str(folder / "unet.safetensors"))
    with pytest.raises(ArtifactMismatchError, match="mixes two fits"):
        Fit.load(folder)
    (folder / "unet.safetensors").unlink()

    def forge(new: dict) -> None:
        """Write tensors and list their checksum, as a run.json edited by hand would."""
        save_file(new, str(emb))
        from imagic_kit.artifacts import _sha256

        files = {**meta["files"], "embeddings.safetensors": {"sha256": _sha256(emb)}}
        run.write_text(json.dumps({**meta, "files": files}))

    forge({**tensors, "e_opt": torch.full_like(tensors["e_opt"], float("nan"))})
    with pytest.raises(ArtifactMismatchError, match="NaN or infinite"):
        Fit.load(folder)
    forge({**tensors, "e_opt": tensors["e_opt"][..., :5].contiguous()})
    with pytest.raises(ArtifactMismatchError, match="does not fit this model"):
        edit(tiny, str(scene_path), "a blue circle", artifacts=folder, **kw)
    emb.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    from imagic_kit.artifacts import _sha256

    run.write_text(json.dumps({**meta, "files": {**meta["files"],
                   "embeddings.safetensors": {"sha256": _sha256(emb)}}}))  # fmt: skip
    with pytest.raises(ArtifactMismatchError, match="cannot be read"):
        Fit.load(folder)


def test_fits_of_the_previous_format_links_and_os_files(tiny, scene_path, saved_fit, tmp_path):
    folder, kw, first = saved_fit
    run = folder / "run.json"
    meta = json.loads(run.read_text())
    legacy = {k: v for k, v in meta.items() if k != "files"}
    run.write_text(json.dumps({**legacy, "format_version": 1}))  # as imagic-kit 0.1 saved it
    with pytest.warns(UserWarning, match="without file checksums"):
        again = edit(tiny, str(scene_path), "a blue circle", artifacts=folder, **kw)
    assert np.array_equal(np.asarray(again.image), np.asarray(first.image))
    (folder / ".DS_Store").write_bytes(b"\0")  # OS metadata does not block a save
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    edit(tiny, str(scene_path), "a blue circle", save_artifacts=link, **kw)
    assert link.is_symlink() and json.loads(run.read_text())["format_version"] == 2


def test_saving_never_deletes_the_users_files(tiny, scene_path, saved_fit):
    """A folder that holds a fit and anything else (the photo itself, notes) is not replaced."""
    folder, kw, _ = saved_fit
    photo = folder / "photo.png"
    photo.write_bytes(scene_path.read_bytes())
    with pytest.raises(ConfigError, match="not a saved fit.*photo.png"):
        edit(tiny, str(photo), "a blue circle", save_artifacts=folder, **kw)
    assert photo.read_bytes() == scene_path.read_bytes()


def test_a_saved_fit_replaces_the_folder_as_a_whole(tiny, scene_path, saved_fit):
    folder, kw, _ = saved_fit
    assert (folder / "unet_lora.safetensors").is_file()
    edit(
        tiny, str(scene_path), "a blue circle", save_artifacts=folder, **{**kw, "finetune": "none"}
    )
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.safetensors", "run.json"]
    assert Fit.load(folder).lora is None  # no stale LoRA from the previous fit
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no leftovers
