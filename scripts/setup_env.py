#!/usr/bin/env python3
"""Create (or update) the project's virtual environment in .venv with nothing but python3.

    python3 scripts/setup_env.py          # runtime dependencies
    python3 scripts/setup_env.py --dev    # plus pytest and ruff
    python3 scripts/setup_env.py --demo   # plus gradio

torch is installed first, on its own: ``torch==2.13.0`` by default (a CPU build where one is
provided locally), or whatever ``IMAGIC_KIT_TORCH`` says (e.g. ``IMAGIC_KIT_TORCH=torch`` for your
platform's default CUDA build). The other packages are pinned by ``constraints.txt`` to the
versions the test suite last passed with. Re-running is cheap: nothing is reinstalled when the
requirements did not change.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("IMAGIC_KIT_VENV", ROOT / ".venv"))


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def ensure(extras: list[str]) -> Path:
    torch_spec = os.environ.get("IMAGIC_KIT_TORCH", "torch==2.13.0")
    key = hashlib.sha256()
    for f in ("pyproject.toml", "constraints.txt"):
        key.update((ROOT / f).read_bytes())
    key.update(f"{torch_spec}|{','.join(sorted(extras))}|{sys.version_info[:2]}".encode())
    stamp = VENV / ".imagic-kit-installed"
    py = venv_python()
    if py.exists() and stamp.exists() and stamp.read_text() == key.hexdigest():
        return py
    if not py.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, torch_spec)
    target = f".[{','.join(extras)}]" if extras else "."
    run(*pip, "-c", str(ROOT / "constraints.txt"), "-e", target)
    stamp.write_text(key.hexdigest())
    return py


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dev", action="store_true", help="also install the test and lint tools")
    ap.add_argument("--demo", action="store_true", help="also install gradio for the web demo")
    a = ap.parse_args()
    extras = [e for e, on in (("dev", a.dev), ("demo", a.demo)) if on]
    ensure(extras)
    print(f"environment ready: {VENV}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
