#!/usr/bin/env python3
"""Regenerate assets/example.png and assets/example-2.png with the shapes-world renderer: a red
circle on a gray background, and the same circle on another draw of the gray texture (a second
reference for methods that take several, such as DECOR)."""

from pathlib import Path

from imagic_kit.shapes import Scene, render

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    for name, seed in (("example.png", 7), ("example-2.png", 8)):
        scene = Scene("circle", "red", "gray", x0=18, y0=20, side=26, texture_seed=seed)
        render(scene)[0].save(ROOT / "assets" / name)
        print(f"wrote assets/{name}: {scene}")
