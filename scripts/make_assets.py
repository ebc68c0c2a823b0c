#!/usr/bin/env python3
"""Regenerate assets/example.png with the shapes-world renderer (a red circle on a gray background)."""

from pathlib import Path

from imagic_kit.shapes import Scene, render

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    scene = Scene("circle", "red", "gray", x0=18, y0=20, side=26, texture_seed=7)
    render(scene)[0].save(ROOT / "assets" / "example.png")
    print(f"wrote assets/example.png: {scene}")
