"""Misuse, one class of mistake per test: every refusal is one line with exit status 2 and no
traceback, it comes before the work, and nothing the user already had is changed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from imagic_kit import edit
from imagic_kit.artifacts import Fit
from imagic_kit.bench.runner import read_results, run_benchmark
from imagic_kit.bench.suites import load_suite, make_suite
from imagic_kit.cli import main
from imagic_kit.errors import (
    ArtifactMismatchError,
    ConfigError,
    InputImageError,
    ModelNotAvailableError,
)
from imagic_kit.registry import make_config
from imagic_kit.sampling import schedule


def one_line(capsys, argv, match):
    """Run the CLI, expect a one-line refusal naming ``match``; returns stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("imagic-kit: error:"), err
    assert "Traceback" not in err and match in lines[0], lines[0]
    return err


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the CLI gets as far as loading a model: refusals must come first."""

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr("imagic_kit.models.load_backbone", refuse)


# --- non-finite numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", float("nan"), math.inf])
@pytest.mark.parametrize("field", ["guidance_scale", "strength", "restore_unedited"])
def test_non_finite_numbers_are_refused(field, value):
    with pytest.raises(ConfigError, match="finite number|expected"):
        make_config("sdedit", **{field: value})


def test_non_finite_values_are_refused_where_a_field_has_no_upper_bound_or_is_an_integer():
    for field, value in (
        ("lora_alpha", "inf"),
        ("loss_weight_cap", "1e400"),
        ("embedding_steps", "inf"),
        ("embedding_steps", "nan"),
        ("candidates", float("inf")),
    ):
        with pytest.raises(ConfigError):
            make_config("imagic", **{field: value})


def test_nan_on_the_command_line_writes_nothing(capsys, tmp_path, scene_path, no_model):
    out = tmp_path / "o.png"
    for value in ("nan", "inf", "-inf"):
        one_line(
            capsys,
            ["edit", "--image", str(scene_path), "--prompt", "a blue circle", "--method",
             "sdedit", "--set", f"guidance_scale={value}", "-o", str(out)],
            "finite number",
        )  # fmt: skip
    one_line(
        capsys,
        ["edit", "--image", str(scene_path), "--prompt", "a blue circle", "--method", "sdedit",
         "--sweep", "guidance_scale=3,nan", "-o", str(out)],
        "finite number",
    )  # fmt: skip
    assert not out.exists()


# --- values inside the documented range -------------------------------------------------------------


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


# --- paths read from files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["../escape", "a/b", "..", ".hidden", "", "x" * 101, "-rf", "a b"]
)
def test_suite_ids_cannot_leave_the_output_folder(tmp_path, bad_id):
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:2]
    suite["edits"][0]["id"] = bad_id
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ConfigError, match="cannot name a file"):
        load_suite(path)


def test_duplicate_ids_and_bad_entries_are_refused_before_anything_runs(tiny, tmp_path):
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:3]
    suite["edits"][1]["id"] = suite["edits"][0]["id"]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ConfigError, match="used twice"):
        load_suite(path)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="twice"):  # a suite given as a dict is checked too
        run_benchmark(tiny, suite, [("sdedit", None)], out, progress=False)
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:1]
    suite["edits"][0]["id"] = "../../evil"
    with pytest.raises(ConfigError, match="cannot name a file"):
        run_benchmark(tiny, suite, [("sdedit", None)], out, progress=False)
    assert not out.exists() and not (tmp_path.parent / "evil.png").exists()
    for change, match in (
        ({"target": {"shape": "hexagon", "colour": "red", "background": "gray"}}, "hexagon"),
        ({"changes": ["mood"]}, "changes"),
        ({"prompt": "  "}, "prompt must be non-empty"),
        ({"changes": [["colour"]]}, "changes"),
        ({"source_prompt": 5}, "source_prompt must be text"),
        ({"id": None}, "the id must be a name"),
        ({"scene": {**suite_scene(), "side": float("nan")}}, "whole numbers"),
        ({"scene": {**suite_scene(), "x0": -1000}}, "inside the 64x64 canvas"),
        ({"scene": {**suite_scene(), "side": 10**12}}, "inside the 64x64 canvas"),
    ):
        suite = make_suite("quick", seed=0)
        suite["edits"] = suite["edits"][:1]
        suite["edits"][0].update(change)
        path.write_text(json.dumps(suite))
        with pytest.raises(ConfigError, match=match):
            load_suite(path)


def suite_scene():
    return dict(make_suite("quick", seed=0)["edits"][0]["scene"])


def test_suite_images_go_through_the_safe_loader(tmp_path):
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:1]
    del suite["edits"][0]["scene"]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    suite["edits"][0]["image"] = "broken.png"  # relative to the suite file
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(InputImageError, match="broken.png"):
        load_suite(path)
    (tmp_path / "folder.png").mkdir()
    suite["edits"][0]["image"] = "folder.png"
    path.write_text(json.dumps(suite))
    with pytest.raises(InputImageError, match="is a folder"):
        load_suite(path)


# --- work thrown away at the end -------------------------------------------------------------------------


def test_unwritable_targets_are_found_before_the_model_loads(
    capsys, tmp_path, scene_path, no_model
):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    base = ["edit", "--image", str(scene_path), "--prompt", "a blue circle", "--method", "imagic"]
    one_line(capsys, [*base, "-o", str(blocker / "out.png")], "is a file, not a folder")
    (tmp_path / "dir.png").mkdir()
    one_line(capsys, [*base, "-o", str(tmp_path / "dir.png")], "is a folder")
    one_line(capsys, [*base, "--save-artifacts", str(blocker)], "is a file, not a folder")
    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line(capsys, [*base, "--save-artifacts", str(mine)], "not a saved fit")
    one_line(capsys, [*base, "--prompt", "   "], "the prompt is empty")
    one_line(capsys, [*base, "--threads", "0"], "--threads 0")
    one_line(capsys, [*base, "--threads", "-2"], "--threads -2")
    one_line(capsys, ["edit", "--image", str(tmp_path), "--prompt", "a", "--method", "sdedit"],
             "is a folder")  # fmt: skip
    assert (mine / "notes.txt").read_text() == "keep me" and blocker.read_text() == "mine"


def test_the_api_checks_the_artifacts_folder_before_the_fit(tiny, scene_path, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a saved fit"):
        edit(tiny, str(scene_path), "a blue circle", method="sdedit", seed=0, progress=False,
             save_artifacts=mine)  # fmt: skip
    assert (mine / "notes.txt").read_text() == "keep me"


def test_bench_refuses_before_the_model_loads(capsys, tmp_path, no_model):
    base = ["bench", "--suite", "quick", "--methods", "sdedit", "--out", str(tmp_path / "b")]
    one_line(capsys, [*base, "--limit", "0"], "--limit 0")
    one_line(capsys, [*base, "--shard", "2/2"], "shard 2/2")
    one_line(capsys, [*base, "--threads", "0"], "--threads 0")
    one_line(capsys, [*base, "--set", "strength=nan"], "finite number")
    one_line(capsys, [*base, "--sweep", "strength=0.5,7"], "out of range")
    one_line(capsys, [*base, "--set", "strenght=0.5"], "belong to none")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line(capsys, [*base[:-1], str(blocker)], "is a file")
    assert not (tmp_path / "b").exists()


# --- the user's own file ------------------------------------------------------------------------------------


def test_the_input_image_is_never_an_output(capsys, tmp_path, scene_path, no_model):
    before = scene_path.read_bytes()
    base = ["edit", "--image", str(scene_path), "--prompt", "a blue circle", "--method", "sdedit"]
    one_line(capsys, [*base, "-o", str(scene_path)], "is the input image")
    # the same file by another spelling, and the further images of a sweep or of several images
    other = scene_path.parent / "." / scene_path.name
    one_line(capsys, [*base, "-o", str(other)], "is the input image")
    named = scene_path.with_name("scene-1.png")
    named.write_bytes(before)
    one_line(
        capsys,
        ["edit", "--image", str(named), "--prompt", "a blue circle", "--method", "sdedit",
         "--sweep", "strength=0.3,0.5", "-o", str(scene_path)],
        "is the input image",
    )  # fmt: skip
    assert scene_path.read_bytes() == before and named.read_bytes() == before


# --- saved fits --------------------------------------------------------------------------------------------


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


# --- results.csv cut short ----------------------------------------------------------------------------------


def test_a_partial_last_row_is_dropped_and_redone(tiny, tmp_path, capsys):
    suite = make_suite("quick", seed=1)
    kw = dict(overrides={"num_inference_steps": "3"}, progress=False, limit=3)
    whole = run_benchmark(tiny, suite, [("sdedit", None)], tmp_path / "whole", **kw)
    out = tmp_path / "cut"
    run_benchmark(tiny, suite, [("sdedit", None)], out, **{**kw, "limit": 2})
    results = out / "results.csv"
    text = results.read_text()
    last = text.splitlines()[-1]
    results.write_text(text[: len(text) - len(last) // 2 - 1])  # power lost mid-row
    assert len(read_results(results)) == 1  # the cut row is not counted
    rows = run_benchmark(tiny, suite, [("sdedit", None)], out, **kw)
    assert "partial row" in capsys.readouterr().err
    drop = {"fit_s", "sample_s", "peak_mem_mb"}
    key = lambda r: r["edit_id"]  # noqa: E731
    strip = lambda rs: sorted(({k: v for k, v in r.items() if k not in drop} for r in rs), key=key)  # noqa: E731
    assert strip(rows) == strip(whole)
    assert results.read_text().endswith("\n") and len(results.read_text().splitlines()) == 4


# --- small things ----------------------------------------------------------------------------------------------


def test_quiet_means_no_loading_bars(capsys, tmp_path, scene_path, tiny):
    from imagic_kit.models import to_pipeline

    to_pipeline(tiny).save_pretrained(str(tmp_path / "model"))  # loads with diffusers' bars
    capsys.readouterr()
    code = main(["edit", "--image", str(scene_path), "--prompt", "a blue circle", "--method",
                 "sdedit", "--model", str(tmp_path / "model"), "--seed", "0", "-q", "-o",
                 str(tmp_path / "o.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and "Loading" not in err and "it/s" not in err, err


def test_pickle_weights_load_only_with_a_warning(tiny, tmp_path):
    from imagic_kit.models import load_backbone, to_pipeline

    to_pipeline(tiny).save_pretrained(str(tmp_path / "bin"), safe_serialization=False)
    assert (tmp_path / "bin" / "unet" / "diffusion_pytorch_model.bin").is_file()
    with pytest.warns(UserWarning, match=r"no safetensors weights.*pickle"):
        bb = load_backbone(str(tmp_path / "bin"), device="cpu")
    assert bb.unet is not None
    to_pipeline(tiny).save_pretrained(str(tmp_path / "st"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_backbone(str(tmp_path / "st"), device="cpu")


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


# --- killed runs ------------------------------------------------------------------------------------------------


def _bench(out):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "imagic_kit.cli", "bench", "--suite", "quick", "--methods",
           "sdedit,ddim@fast", "--model", "tiny-random", "--set", "num_inference_steps=20",
           "--limit", "8", "--threads", "1", "-q", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "IMAGIC_KIT_NUM_THREADS": "1"}

    # A child inherits ignored and blocked signals: a test run started in the background of a
    # non-interactive shell (`cmd &`) has SIGINT ignored, and so would the
    # benchmark it starts. Start the child the way a terminal would.
    def as_from_a_shell():
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=as_from_a_shell)  # fmt: skip


def _rows(out):
    drop = {"fit_s", "sample_s", "peak_mem_mb", "fit_reused"}
    return sorted(
        tuple((k, v) for k, v in r.items() if k not in drop)
        for r in read_results(out / "results.csv")
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert _bench(out).wait(timeout=300) == 0
    return _rows(out)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_a_killed_benchmark_resumes_to_the_same_rows(tmp_path, sig, uninterrupted):
    """Killed at any moment, the benchmark leaves only whole files (every image opens, every row
    parses) and a rerun finishes with the rows of an uninterrupted run."""
    import signal
    import time

    cut = tmp_path / "cut"
    p = _bench(cut)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_results(cut / "results.csv")) < 3:
        time.sleep(0.02)
    p.send_signal(getattr(signal, sig))
    assert p.wait(timeout=60) != 0
    if sig == "SIGINT":  # one line, no traceback
        assert "Traceback" not in p.stderr.read().decode()
    assert 3 <= len(read_results(cut / "results.csv")) < 16
    for png in (cut / "images").rglob("*.png"):
        if not png.name.startswith("."):
            Image.open(png).verify()
    assert _bench(cut).wait(timeout=300) == 0
    assert _rows(cut) == uninterrupted


# --- more probes: values, API types, odd files ------------------------------------------------------------


def test_values_that_look_right_but_are_not(tmp_path):
    with pytest.raises(ConfigError, match="expected int"):
        make_config("sdedit", num_inference_steps="2.5e0")  # not silently 2
    assert make_config("sdedit", num_inference_steps="1e2").num_inference_steps == 100
    for bad in ([], ",", [1, [2]]):
        with pytest.raises(ConfigError, match="lora_targets"):
            make_config("imagic", lora_targets=bad)
    bad_yaml = tmp_path / "p.yaml"
    bad_yaml.write_bytes(b"\xff\xfe strength: 1")
    with pytest.raises(ConfigError, match="not UTF-8"):
        make_config("sdedit", preset=str(bad_yaml))
    from imagic_kit.config import parse_set_args, parse_sweep

    with pytest.raises(ConfigError, match="given twice"):
        parse_sweep(["guidance_scale=2,3", "guidance_scale=4"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_set_args(["strength=0.2", "strength=0.3"])
    from imagic_kit.threads import configure_threads

    for n in (0, -1, 100_000):
        with pytest.raises(ConfigError, match="threads"):
            configure_threads(n)


def test_lora_targets_that_match_nothing_stop_before_the_embedding_stage(tiny, scene_path):
    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="nosuchmod match no module"):
        edit(tiny, str(scene_path), "a blue circle", method="imagic", seed=0, progress=False,
             embedding_steps=2000, lora_targets="nosuchmod")  # fmt: skip
    assert time.perf_counter() - t0 < 5  # 2000 embedding steps were not run


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


def test_results_files_that_are_empty_or_not_files(tiny, tmp_path):
    suite = make_suite("quick", seed=1)
    kw = dict(overrides={"num_inference_steps": "2"}, progress=False, limit=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.csv").write_text("")  # a crash before the header reached the disk
    rows = run_benchmark(tiny, suite, [("sdedit", None)], empty, **kw)
    assert len(rows) == 2 and read_results(empty / "results.csv") == rows
    odd = tmp_path / "odd"
    (odd / "results.csv").mkdir(parents=True)
    with pytest.raises(ConfigError, match="is not a file"):
        run_benchmark(tiny, suite, [("sdedit", None)], odd, **kw)
    # only the last newline lost: the row is dropped and redone, not counted
    text = (empty / "results.csv").read_text()
    (empty / "results.csv").write_text(text[:-1])
    again = run_benchmark(tiny, suite, [("sdedit", None)], empty, **kw)
    assert len(again) == 2 and (empty / "results.csv").read_text().endswith("\n")
