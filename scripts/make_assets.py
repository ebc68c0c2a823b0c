#!/usr/bin/env python3
"""Regenerate assets/example.png and assets/example-2.png with the shapes-world renderer: a red
circle on a gray background, and a second view of the same scene (the same background, the circle
a little lower and smaller), a second reference for methods that take several, such as DECOR.
References should agree on what their caption leaves unnamed: with another draw of the texture as
the second reference, DECOR's customised model drew every blue circle green (docs/methods/decor.md)."""

from pathlib import Path

from imagic_kit.shapes import Scene, render

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    for name, (x0, y0, side) in (("example.png", (18, 20, 26)), ("example-2.png", (19, 22, 24))):
        scene = Scene("circle", "red", "gray", x0=x0, y0=y0, side=side, texture_seed=7)
        render(scene)[0].save(ROOT / "assets" / name)
        print(f"wrote assets/{name}: {scene}")
