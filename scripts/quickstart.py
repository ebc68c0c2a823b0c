#!/usr/bin/env python3
"""README command 1: set up .venv and edit the example image with Imagic and the embedded model.

    python3 scripts/quickstart.py

Edits assets/example.png (a red circle on a gray background, a scene of the shapes world the
embedded model knows) into "a blue circle on a gray background" with Imagic's ``fast`` preset,
writes out/quickstart.png (its recipe is in the PNG: ``imagic-kit recipe out/quickstart.png``),
and says what the output shows, as read back by the shapes world's oracle, and how long it took.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setup_env import ROOT, VENV, ensure  # noqa: E402

IMAGE = ROOT / "assets" / "example.png"
PROMPT = "a blue circle on a gray background"
OUT = ROOT / "out" / "quickstart.png"

# run in the environment's Python: what the shapes world's oracle reads in the output
READ_BACK = """
import sys
from PIL import Image
from imagic_kit.shapes import read
src, out = (read(Image.open(p).convert("RGB")) for p in sys.argv[1:3])
if out.found:
    moved = ((out.centre[0] - src.centre[0]) ** 2 + (out.centre[1] - src.centre[1]) ** 2) ** 0.5
    print(f"a {out.colour} {out.shape} on a {out.background} background, "
          f"its centre {moved:.1f} px from the input's")
else:
    print(f"no object on a {out.background} background")
"""


def main() -> int:
    py = ensure([])
    exe = VENV / ("Scripts/imagic-kit.exe" if sys.platform == "win32" else "bin/imagic-kit")
    cmd = [
        str(exe),
        "edit",
        "--image",
        str(IMAGE.relative_to(ROOT)),
        "--prompt",
        PROMPT,
        "--method",
        "imagic",
        "--preset",
        "fast",
        "--seed",
        "0",
        "--output",
        str(OUT.relative_to(ROOT)),
    ]
    print("+", shlex.join(["imagic-kit", *cmd[1:]]), flush=True)
    t0 = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT).returncode
    took = time.perf_counter() - t0
    if code != 0:
        return code
    shows = subprocess.run(
        [str(py), "-c", READ_BACK, str(IMAGE), str(OUT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    print(f"\nwrote {OUT.relative_to(ROOT)} in {took:.0f} s (Imagic, fast preset, seed 0)")
    print("input:  a red circle on a gray background (assets/example.png)")
    print(f"asked:  {PROMPT}")
    if shows.returncode == 0:
        print(f"output: {shows.stdout.strip()}")
    print(
        f"recipe: imagic-kit recipe {OUT.relative_to(ROOT)}   (the same seed gives the same image)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
