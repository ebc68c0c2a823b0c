"""A benchmark killed at any moment (SIGKILL, SIGINT) in a subprocess leaves whole files, and a rerun
finishes with the rows of an uninterrupted run."""

from __future__ import annotations

import pytest
from PIL import Image

from imagic_kit.bench.store import read_results


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
