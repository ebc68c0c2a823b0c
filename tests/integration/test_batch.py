"""Batch editing: manifests checked up front, bad rows recorded while the others run, resumable to
the same bytes after a kill, and a 2-process accelerate run that does every row exactly once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import BATCH_ROWS as GOOD
from conftest import manifest
from PIL import Image

from imagic_kit.batch.manifest import read_manifest
from imagic_kit.cli import main
from imagic_kit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "assets" / "example.png"


def test_bad_rows_fail_and_the_others_run(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    path = manifest(tmp_path / "in", [
        *GOOD[:2],
        "bad.png,a blue circle,sdedit,0,,4,",
        "missing.png,a blue circle,sdedit,0,,4,",
        "ex.png,a blue circle,nomethod,0,,4,",
    ])  # fmt: skip
    out = tmp_path / "out"
    code = main(["batch", str(path), "--out", str(out), "--model", "tiny-random", "-q"])
    text = capsys.readouterr().out
    assert code == 1  # some row failed
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["rows"]) == (2, 3, 5)
    errors = {f["row"]: f["error"] for f in summary["failures"]}
    assert "corrupt or truncated" in errors[3] and "does not exist" in errors[4]
    assert "unknown method 'nomethod'" in errors[5] and "3 failed" in text
    assert sorted(p.name for p in out.glob("*.png")) == [
        "00001-ex-sdedit.png",
        "00002-ex-sdedit.png",
    ]
    again = main(["batch", str(path), "--out", str(out), "--model", "tiny-random", "-q"])
    assert again == 1 and json.loads((out / "summary.json").read_text())["skipped"] == 2


def test_a_malformed_manifest_stops_before_anything_runs(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("image,prompt\nex.png,a\n")
    with pytest.raises(ConfigError, match="required column.*method"):
        read_manifest(bad)
    jl = tmp_path / "m.jsonl"
    jl.write_text('{"image": "a.png", "prompt": "x", "method": "sdedit"}\n{oops\n[1]\n')
    with pytest.raises(ConfigError, match="line 2: not JSON.*line 3: not an object"):
        read_manifest(jl)
    rows = read_manifest(
        manifest(tmp_path, ["ex.png,x,sdedit,0,nan,4,", "ex.png,x,sdedit,0,,4,../up.png"])
    )
    assert "finite number" in rows[0].error and "must be a file name" in rows[1].error


@pytest.mark.parametrize("multi_gpu", [False, True])
def test_accelerate_without_multi_gpu_says_it_runs_one_process(monkeypatch, capsys, multi_gpu):
    """``accelerate launch --num_processes 2`` without ``--multi_gpu`` starts one process on a CPU;
    the batch says so. The environment is the one accelerate's own launcher builds."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    from imagic_kit.batch.command import process_group

    flags = ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
             "--dynamo_backend", "no", "batch_edit.py"]  # fmt: skip
    args, *_ = _validate_launch_command(launch_command_parser().parse_args(flags))
    _, env = prepare_simple_launcher_cmd_env(args)
    for k in ("WORLD_SIZE", "MASTER_PORT", "ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if multi_gpu:  # what the multi-process launcher gives each of its processes
        monkeypatch.setenv("WORLD_SIZE", "1")
    assert process_group()[:2] == (0, 1)
    warned = "started one (without --multi_gpu" in capsys.readouterr().err
    assert warned is not multi_gpu
    for k in env:  # a plain run, not under accelerate: nothing to say
        monkeypatch.delenv(k, raising=False)
    assert process_group()[:2] == (0, 1) and not capsys.readouterr().err


def test_a_changed_row_is_redone_and_every_image_of_a_row_is_kept(tmp_path, capsys):
    path = manifest(tmp_path / "in", GOOD[:3])
    out = tmp_path / "out"
    args = ["batch", str(path), "--out", str(out), "--model", "tiny-random", "-q"]
    assert main(args) == 0
    path.write_text(path.read_text().replace("a green circle", "a green square"))  # row 3 changed
    assert main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    assert (s["done"], s["skipped"]) == (1, 2)
    # several images per row: all written, and a row counts as done only when all are there
    rows = path.read_text().splitlines()
    path.write_text(rows[0] + ",num_images_per_prompt\n" + rows[1] + ",2\n")
    assert main(args) == 0
    assert (out / "00001-ex-sdedit.png").is_file() and (out / "00001-ex-sdedit-1.png").is_file()
    (out / "00001-ex-sdedit-1.png").unlink()
    assert main(args) == 0 and (out / "00001-ex-sdedit-1.png").is_file()
    capsys.readouterr()
    path.write_text(rows[0] + "\n" + rows[1] + "\n" + rows[1] + "00001-ex-sdedit.png\n")
    assert main(args) == 2  # two rows writing one file: refused before anything runs
    assert "both write" in capsys.readouterr().err


def test_jsonl_values_and_spreadsheet_csv(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "ex.png")
    jl = tmp_path / "m.jsonl"
    jl.write_text(
        json.dumps({"image": "ex.png", "prompt": 5, "method": "sdedit"}) + "\n"
        + json.dumps({"image": "ex.png", "prompt": "a\\u2028b", "method": "sdedit"}) + "\n"
    )  # fmt: skip
    rows = read_manifest(jl)
    assert "prompt must be text" in rows[0].error and rows[1].error is None
    bom = tmp_path / "b.csv"
    bom.write_bytes('\ufeffimage,prompt,method\nex.png,"two\nlines",sdedit\n'.encode())
    (row,) = read_manifest(bom)
    assert row.error is None and row.prompt == "two\nlines"


def test_rows_with_several_reference_images(tmp_path):

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "ex.png")
    Image.open(EXAMPLE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "flip.png")
    quick = {"finetune_steps": 2, "num_inference_steps": 3, "candidates": 1, "batch_size": 2}
    rows = [
        {"image": ["ex.png", "flip.png"], "prompt": "a blue circle", "method": "decor",
         "source_prompt": "a red circle", **quick},
        {"image": ["ex.png", "flip.png"], "prompt": "a blue circle", "method": "sdedit",
         "num_inference_steps": 3},
    ]  # fmt: skip
    jl = folder / "m.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    csv = folder / "m.csv"
    csv.write_text("image,prompt,method,source_prompt,finetune_steps,num_inference_steps,"
                   "candidates,batch_size\nex.png;flip.png,a blue circle,decor,a red circle,2,3,1,2\n")  # fmt: skip
    parsed = read_manifest(csv)
    assert [p.name for p in parsed[0].images] == ["ex.png", "flip.png"]
    out = tmp_path / "out"
    assert main(["batch", str(jl), "--out", str(out), "--model", "tiny-random", "-q"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (1, 1)
    assert "takes 1 input image(s), got 2" in summary["failures"][0]["error"]
    from imagic_kit.imaging import read_recipe

    recipe = read_recipe(next(out.glob("00001-*.png")))
    assert len(recipe["input_hashes"]) == 2 and recipe["edit_facts"] == {"decor_words": ["red"]}


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
