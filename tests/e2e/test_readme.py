"""Every command block of README.md runs as written, from a folder laid out like the repository.

The ```bash blocks are read line by line (``\\`` continuations joined, comments dropped) and each
command runs in this process: ``imagic-kit ...`` through the CLI's ``main``, the batch script
through its ``main``. Only the step counts shrink, by adding ``--set`` fields (the README's own
values are kept): the commands, paths, presets and options are the README's. The ```python block
runs with the same fields added to its ``edit`` calls. A line the test does not know how to run
fails the test, so a new kind of command gets a rule here instead of going unchecked.

Left out, each for a stated reason (``NOT_HERE``): the setup scripts (they build ``.venv`` from
scratch: the CI runs them on a fresh clone), the demo server (it does not return; its command is
checked with ``--help``), and ``accelerate launch --multi_gpu`` (needs GPUs; the batch script it
launches runs here on one process, and tests/test_batch.py runs accelerate on the CPU).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: Fewer steps for every method that has the field: the README's commands, quickly.
FAST = {
    "embedding_steps": "2",
    "finetune_steps": "2",
    "tune_steps": "1",
    "num_inference_steps": "3",
    "candidates": "2",
}

#: Lines not run here, with the reason (prefix match on the command).
NOT_HERE = {
    "python3 scripts/quickstart.py": "builds .venv from scratch (the CI runs it on a fresh clone)",
    "python3 scripts/run_tests.py": "builds .venv and runs this suite",
    "python3 scripts/setup_env.py": "builds .venv from scratch",
    "accelerate launch --multi_gpu": "needs GPUs; the batch script runs below on one process",
}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def command_lines(block: str) -> list[str]:
    """One entry per command: continuations joined, comments and blank lines dropped."""
    text = block.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a comment, not a '#' inside quotes
        if line:
            out.append(line)
    return out


def fields_of(methods: list[str]) -> set[str]:
    from imagic_kit.config import field_infos
    from imagic_kit.registry import get_method

    names: set[str] = set()
    for m in methods:
        names |= {i.name for i in field_infos(get_method(m.split("@")[0]).config_cls)}
    return names


def with_fast_fields(args: list[str], methods: list[str]) -> list[str]:
    given = {a.split("=")[0] for flag, a in zip(args, args[1:], strict=False) if flag == "--set"}
    swept = {a.split("=")[0] for flag, a in zip(args, args[1:], strict=False) if flag == "--sweep"}
    have = fields_of(methods)
    extra = []
    for key, value in FAST.items():
        if key in have and key not in given and key not in swept:
            extra += ["--set", f"{key}={value}"]
    return args + extra


def option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


def run_imagic_kit(args: list[str]) -> int:
    from imagic_kit.cli import main

    sub = args[0]
    if sub == "edit":
        args = with_fast_fields(args, [option(args, "--method", "imagic")])
    elif sub == "bench":
        args = with_fast_fields(args, option(args, "--methods", "imagic").split(",")) + [
            "--limit",
            "1",
        ]
    elif sub == "batch":
        import csv

        with open(args[1], newline="") as f:
            methods = sorted({r["method"] for r in csv.DictReader(f)})
        args = with_fast_fields(args, methods)
    elif sub == "demo":
        args = args + ["--help"]  # a server: check that the command and its options parse
    try:
        return main(args)
    except SystemExit as e:  # --help
        return int(e.code or 0)


@pytest.fixture()
def repo_like(tmp_path, monkeypatch):
    """A folder with the repository's assets and scripts, as the README's commands expect."""
    for name in ("assets", "scripts"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    import torch

    from imagic_kit import threads

    n = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(n)  # the README's --threads 1 must not slow the rest of the suite
    threads._configured = n


def test_every_bash_block_runs(repo_like, monkeypatch):
    env: dict[str, str] = {}
    ran = 0
    for block in blocks("bash"):
        for line in command_lines(block):
            for part in line.split("&&"):
                part = part.strip().removesuffix("&").strip()
                if any(part.startswith(p) for p in NOT_HERE):
                    continue
                if m := re.fullmatch(r'(\w+)="([^"]*)"', part):
                    env[m.group(1)] = m.group(2)
                    continue
                with monkeypatch.context() as mp:
                    for k, v in env.items():
                        mp.setenv(k, v)
                    words = [os.path.expandvars(w) for w in shlex.split(part)]
                if words[:1] == ["source"]:
                    continue  # the test already runs inside the environment
                if words[0] == "imagic-kit":
                    rc = run_imagic_kit(words[1:])
                elif words[:2] in (["python", "scripts/batch_edit.py"],):
                    rc = run_imagic_kit(["batch", *words[2:]])
                else:
                    pytest.fail(
                        f"README line the test cannot run: {part!r}; add a rule to {__file__}"
                    )
                assert rc == 0, f"README command failed (exit {rc}): {part}"
                ran += 1
    assert ran >= 15, f"only {ran} README commands ran; did the blocks change?"
    assert Path("out/blue.png").is_file() and Path("out/batch/summary.json").is_file()


def test_python_block_runs(repo_like, monkeypatch):
    import imagic_kit
    import imagic_kit.api as api

    def fast(fn):
        def wrapped(*a, **kw):
            have = fields_of([kw["method"]])
            kw.update({k: int(v) for k, v in FAST.items() if k in have and k not in kw})
            return fn(*a, **kw)

        return wrapped

    monkeypatch.setattr(api, "edit", fast(api.edit))
    monkeypatch.setattr(api, "edit_sweep", fast(api.edit_sweep))
    monkeypatch.setattr(imagic_kit, "edit", api.edit, raising=False)
    from imagic_kit.pipelines import EditPipeline

    call = EditPipeline.__call__

    def fast_call(self, *a, **kw):  # the pipelines' calls, with the same fields added
        return fast(lambda *a, method, **kw: call(self, *a, **kw))(*a, method=self.method, **kw)

    monkeypatch.setattr(EditPipeline, "__call__", fast_call)
    pythons = blocks("python")
    assert len(pythons) == 2  # the pipeline, then edit()
    namespace = {"__name__": "readme"}
    for python in pythons:  # one after the other, as a reader would paste them
        exec(compile(python, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["out"].fit_reused  # the second pipeline call re-sampled the first one's fit
    from imagic_kit.imaging import read_recipe

    assert read_recipe("out/blue.png")["method"] == "imagic"
