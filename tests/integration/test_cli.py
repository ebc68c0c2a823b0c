"""The command line: outputs with recipes, determinism, one-line errors for user mistakes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_line
from PIL import Image

from imagic_kit.cli import main
from imagic_kit.imaging import read_recipe

# a few-step Imagic recipe for command-line tests that need the method to run, not to edit well
IMAGIC_FAST = [
    "--set",
    "embedding_steps=3",
    "--set",
    "finetune_steps=3",
    "--set",
    "num_inference_steps=3",
]


def run(capsys, *argv):
    argv = list(argv)
    if argv[0] == "edit" and "--model" not in argv:
        argv += ["--model", "tiny-random"]  # fast; the default (tiny-shapes) is checked below
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_baselines(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert "sdedit" in names and "ddim" in names


def test_show_config(capsys):
    code, out, _ = run(capsys, "show-config", "sdedit", "--preset", "strong")
    assert code == 0 and "strength = 0.8 (default 0.6)" in out and "[sample]" in out
    code, out, _ = run(capsys, "show-config", "ddim", "--yaml")
    assert code == 0 and "num_inference_steps: 50" in out


@pytest.mark.parametrize("method", ["sdedit", "ddim"])
def test_edit_writes_exactly_output_with_recipe_and_is_deterministic(
    capsys, tmp_path, scene_path, method
):
    outs = []
    for name in ("a.png", "b.png"):
        out = tmp_path / "sub" / name
        code, stdout, err = run(
            capsys,
            "edit",
            "--image",
            str(scene_path),
            "--prompt",
            "a blue circle",
            "--method",
            method,
            "--seed",
            "42",
            "--output",
            str(out),
            "--set",
            "num_inference_steps=5",
            "--quiet",
        )
        assert code == 0, err
        assert str(out) in stdout
        outs.append(out)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.png", "b.png"]
    a, b = (np.asarray(Image.open(p)) for p in outs)
    assert np.array_equal(a, b)
    recipe = read_recipe(outs[0])
    assert (
        recipe["prompt"] == "a blue circle" and recipe["method"] == method and recipe["seed"] == 42
    )
    assert recipe["config"]["num_inference_steps"] == 5 and recipe["model"] == "tiny-random"
    assert len(recipe["input_hashes"][0]) == 64 and "torch" in recipe["versions"]


def test_artifacts_round_trip_through_cli(capsys, tmp_path, scene_path):
    common = [
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "a blue circle",
        "--method",
        "ddim",
        "--seed",
        "3",
        "-q",
        "--set",
        "num_inference_steps=5",
    ]
    code, _, err = run(
        capsys, *common, "-o", str(tmp_path / "a.png"), "--save-artifacts", str(tmp_path / "fit")
    )
    assert code == 0, err
    code, out, err = run(
        capsys, *common, "-o", str(tmp_path / "b.png"), "--artifacts", str(tmp_path / "fit")
    )
    assert code == 0, err and "fit reused" in out
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png"))
    )


def one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagic-kit: error:"), err
    assert match in lines[0], lines[0]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (
            ["--method", "sdedit", "--set", "strenght=0.5"],
            "unknown config key 'strenght' of 'sdedit': did you mean 'strength'?",
        ),
        (["--method", "sdedit", "--set", "strength=2"], "out of range"),
        (["--method", "sdedit", "--preset", "nope"], "unknown preset 'nope'"),
        (["--method", "sdedit", "--output", "x.jpg"], "must end in .png"),
        (["--method", "sdedit", "--model", "nobody/missing"], "not available offline"),
        (
            [
                "--method",
                "sdedit",
                "--device",
                "cuda:7" if not __import__("torch").cuda.is_available() else "tpu",
            ],
            "device",
        ),
    ],
)
def test_user_mistakes_are_one_line(capsys, tmp_path, scene_path, extra, match):
    code, _, err = run(
        capsys,
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "a blue circle",
        "-q",
        "-o",
        str(tmp_path / "o.png"),
        *extra,
    )
    one_line_error(code, err, match)
    assert not (tmp_path / "o.png").exists()


def test_bad_images_and_prompts_are_one_line(capsys, tmp_path, scene_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    code, _, err = run(
        capsys,
        "edit",
        "--image",
        str(bad),
        "--prompt",
        "x",
        "--method",
        "sdedit",
        "-q",
        "-o",
        str(tmp_path / "o.png"),
    )
    one_line_error(code, err, "bad.png")
    code, _, err = run(
        capsys,
        "edit",
        "--image",
        str(tmp_path / "missing.png"),
        "--prompt",
        "x",
        "--method",
        "sdedit",
    )
    one_line_error(code, err, "does not exist")
    code, _, err = run(
        capsys,
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "  ",
        "--method",
        "sdedit",
        "-q",
        "-o",
        str(tmp_path / "o.png"),
    )
    one_line_error(code, err, "prompt is empty")
    code, _, err = run(capsys, "edit", "--image", str(scene_path), "--method", "sdedit")
    one_line_error(code, err, "--prompt")


def test_existing_output_survives_a_failed_edit(capsys, tmp_path, scene_path):
    out = tmp_path / "keep.png"
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out)
    before = out.read_bytes()
    code, _, _ = run(
        capsys,
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "x",
        "--method",
        "sdedit",
        "--set",
        "strength=5",
        "-o",
        str(out),
    )
    assert code == 2 and out.read_bytes() == before


def test_console_script_runs_without_traceback(tmp_path):
    env = {**os.environ, "IMAGIC_KIT_NUM_THREADS": "1"}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagic_kit",
            "edit",
            "--image",
            str(tmp_path / "none.png"),
            "--prompt",
            "x",
            "--method",
            "sdedit",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_sweep_writes_a_grid_and_fits_once(capsys, tmp_path, scene_path):
    out = tmp_path / "grid.png"
    code, stdout, err = run(
        capsys,
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "a blue circle",
        "--method",
        "imagic",
        "--seed",
        "1",
        *IMAGIC_FAST,
        "--sweep",
        "eta=0,1",
        "-o",
        str(out),
        "-q",
    )
    assert code == 0, err
    grid = Image.open(out)
    assert grid.size[0] == 2 * 64 and read_recipe(out)["sweep"] == {"eta": [0.0, 1.0]}
    a, b = (read_recipe(tmp_path / f"grid-{i}.png") for i in (0, 1))
    assert (
        a["sweep"] == {"eta": 0.0}
        and b["sweep"] == {"eta": 1.0}
        and b["fit_reused"]
        and not a["fit_reused"]
    )
    code, _, err = run(
        capsys,
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "a blue circle",
        "--method",
        "imagic",
        "--sweep",
        "etta=0,1",
        "-o",
        str(out),
    )
    one_line_error(code, err, "not a field of 'imagic'")


def test_default_model_is_the_embedded_one():
    from imagic_kit.cli import build_parser

    args = build_parser().parse_args(
        ["edit", "--image", "x.png", "--prompt", "p", "--method", "sdedit"]
    )
    assert args.model == "tiny-shapes"


def test_save_candidates_writes_the_ranked_candidates(capsys, tmp_path, scene_path):
    """Best-of-N from the command line: the output is the top-ranked candidate, its recipe holds
    the ranking, and --save-candidates adds a grid of every candidate (8 per row)."""
    out = tmp_path / "best.png"
    code, stdout, err = run(
        capsys,
        "edit",
        "--image",
        str(scene_path),
        "--prompt",
        "a red circle",
        "--method",
        "imagic",
        "--seed",
        "2",
        *IMAGIC_FAST,
        "--set",
        "candidates=10",
        "--save-candidates",
        "-o",
        str(out),
        "-q",
    )
    assert code == 0, err
    grid = tmp_path / "best-candidates.png"
    assert str(grid) in stdout and "best of 10" in stdout
    rk = read_recipe(out)["ranking"]
    assert len(rk["score"]) == 10 and sorted(rk["order"]) == list(range(10))
    g = np.asarray(Image.open(grid).convert("RGB"))
    assert g.shape[1] == 8 * 64 and g.shape[0] > 2 * 64  # 8 a row, 2 rows with labels
    # the output is the top-ranked candidate: some 64 px tile of the grid holds exactly its pixels
    best = np.asarray(Image.open(out).convert("RGB"))
    tiles = [
        g[y : y + 64, x : x + 64] for y in range(g.shape[0] - 63) for x in range(0, 8 * 64, 64)
    ]
    assert any(np.array_equal(t, best) for t in tiles)
    code, _, err = run(
        capsys, "edit", "--image", str(scene_path), "--prompt", "a red circle", "--method",
        "imagic", "--sweep", "eta=0,1", "--save-candidates", "-o", str(out),
    )  # fmt: skip
    one_line_error(code, err, "--save-candidates writes the candidates of one edit")


def test_registered_commands_plug_in_and_bad_ones_are_left_out(monkeypatch, capsys):
    """Subcommands come from the entry-point group imagic_kit.commands: `bench` is there; one that
    fails to load, is not a Command, or takes a core command's name is left out with a warning and
    the others still work."""
    import importlib.metadata

    from imagic_kit import cli

    assert "bench" in [c.name for c in cli.plugin_commands()]

    class EP:
        def __init__(self, name, obj):
            self.name, self.value, self._obj = name, f"tests:{name}", obj

        def load(self):
            if isinstance(self._obj, Exception):
                raise self._obj
            return self._obj

    def hello(args):
        print("hello", args.who)
        return 0

    good = cli.Command("hello", "say hello", "Say hello.", lambda p: p.add_argument("who"), hello)
    fake = [
        EP("hello", good),
        EP("broken", ImportError("no module named gradio")),
        EP("odd", object()),
        EP("edit", cli.Command("edit", "", "", lambda p: None, lambda a: 0)),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: fake)
    cli.plugin_commands.cache_clear()
    try:
        assert [c.name for c in cli.plugin_commands()] == ["hello"]
        err = capsys.readouterr().err
        assert "'broken' left out (no module named gradio)" in err
        assert "'odd' left out" in err and "'edit' left out (the name of a core command)" in err
        assert main(["hello", "world"]) == 0
        assert "hello world" in capsys.readouterr().out
    finally:
        cli.plugin_commands.cache_clear()


def test_a_saved_fit_that_does_not_match_is_refused_before_the_model_loads(
    capsys, tmp_path, scene_path, monkeypatch
):
    common = ["edit", "--image", str(scene_path), "--prompt", "a blue circle", "-q",
              "--model", "tiny-random", "--seed", "0"]  # fmt: skip
    code, _, err = run(capsys, *common, "--method", "ddim", "-o", str(tmp_path / "a.png"),
                       "--set", "num_inference_steps=4", "--save-artifacts", str(tmp_path / "fit"))  # fmt: skip
    assert code == 0, err

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("imagic_kit.models.load_backbone", no_model)
    code, _, err = run(capsys, *common, "--method", "ddim", "-o", str(tmp_path / "b.png"),
                       "--set", "num_inference_steps=5", "--artifacts", str(tmp_path / "fit"))  # fmt: skip
    one_line_error(code, err, "fit_config differs: num_inference_steps: saved 4, now 5")
    code, _, err = run(capsys, *common, "--method", "sdedit", "-o", str(tmp_path / "c.png"),
                       "--artifacts", str(tmp_path / "fit"))  # fmt: skip
    one_line_error(code, err, "method differs: saved 'ddim', now 'sdedit'")


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


def test_quiet_means_no_loading_bars(capsys, tmp_path, scene_path, tiny):
    from imagic_kit.models import to_pipeline

    to_pipeline(tiny).save_pretrained(str(tmp_path / "model"))  # loads with diffusers' bars
    capsys.readouterr()
    code = main(["edit", "--image", str(scene_path), "--prompt", "a blue circle", "--method",
                 "sdedit", "--model", str(tmp_path / "model"), "--seed", "0", "-q", "-o",
                 str(tmp_path / "o.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and "Loading" not in err and "it/s" not in err, err
