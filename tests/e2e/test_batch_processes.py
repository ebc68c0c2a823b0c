"""Batch runs as processes: a killed batch resumes to the same bytes, and two `accelerate launch`
processes on the CPU do every row exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import BATCH_ROWS as GOOD
from conftest import manifest

ROOT = Path(__file__).resolve().parents[2]


EXAMPLE = ROOT / "assets" / "example.png"


def _batch(path: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "imagic_kit.cli", "batch", str(path), "--out", str(out),
           "--model", "tiny-random", "--threads", "1", "-q"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_killed_batch_resumes_to_the_same_bytes(tmp_path):
    rows = [r.replace(",4,", ",40,") for r in GOOD]  # slow enough to be killed mid-way
    path = manifest(tmp_path / "in", rows)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _batch(path, whole).wait(timeout=300) == 0
    p = _batch(path, cut)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cut.glob("*.png"))) < 2:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert 2 <= len(list(cut.glob("*.png"))) < len(rows)
    assert _batch(path, cut).wait(timeout=300) == 0
    assert sorted(p.name for p in cut.glob("*.png")) == sorted(p.name for p in whole.glob("*.png"))
    for png in whole.glob("*.png"):
        assert (cut / png.name).read_bytes() == png.read_bytes(), png.name
    assert not [p for p in cut.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_two_accelerate_processes_on_cpu_do_every_row_once(tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    path = manifest(tmp_path / "in", GOOD)
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "scripts" / "batch_edit.py"), str(path), "--out", str(out),
           "--model", "tiny-random", "-q"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    by_process = s["rows_by_process"]
    assert s["processes"] == 2 and all(by_process)  # both worked
    assert sorted(n for rows in by_process for n in rows) == list(range(1, len(GOOD) + 1))
    assert s["done"] == len(GOOD) and s["failed"] == 0
