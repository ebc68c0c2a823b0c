#!/usr/bin/env python3
"""README command 1: set up .venv and edit the example image with the embedded model.

    python3 scripts/quickstart.py

Writes out/quickstart.png (the recipe is in its PNG metadata: `imagic-kit recipe out/quickstart.png`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setup_env import ROOT, VENV, ensure  # noqa: E402


def main() -> int:
    ensure([])
    exe = VENV / ("Scripts/imagic-kit.exe" if sys.platform == "win32" else "bin/imagic-kit")
    out = ROOT / "out" / "quickstart.png"
    cmd = [
        str(exe),
        "edit",
        "--image",
        str(ROOT / "assets" / "example.png"),
        "--prompt",
        "a blue circle on a gray background",
        "--method",
        "sdedit",
        "--model",
        "tiny-shapes",
        "--seed",
        "0",
        "--output",
        str(out),
    ]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
