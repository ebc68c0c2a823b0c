"""Per-edit metrics on the shapes world (docs/design.md, "The shapes world").

An edit succeeds when the oracle reads the target attributes in the output, the bounding-box
centre moved at most 5 px, the bounding-box side changed at most 25%, and, for edits that keep
the background, the background outside both objects' masks dilated by 3 px stays close to the
input (PSNR >= 25 dB), and the object is drawn clean (``shapes.oracle.cleanliness``: flat, in its
palette colour, without a rim or a fringe). Leakage: the output still shows a source attribute the
edit changes.
``psnr`` compares the whole output with the input: with no attribute changed (the ``reconstruct``
suite) it measures how faithfully a method reproduces its input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from ..shapes import cleanliness, dilate, read

MAX_CENTRE_SHIFT = 5.0
MAX_SIDE_CHANGE = 0.25
MIN_BACKGROUND_PSNR = 25.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()) if a.size else 0.0
    return 10 * math.log10(255.0**2 / max(mse, 1e-6))


def evaluate_edit(
    source: Image.Image | np.ndarray,
    output: Image.Image | np.ndarray,
    target: dict[str, str],
    changes: list[str],
) -> dict[str, Any]:
    """All metrics of one edit. ``target`` holds the wanted shape/colour/background, ``changes``
    the attributes the edit changes (the others must stay)."""
    a_in = np.asarray(source.convert("RGB") if isinstance(source, Image.Image) else source)
    a_out = np.asarray(output.convert("RGB") if isinstance(output, Image.Image) else output)
    if (
        a_out.shape != a_in.shape
    ):  # e.g. a 512 px model on the 64 px world: compare at the world's size
        size = (a_in.shape[1], a_in.shape[0])
        a_out = np.asarray(
            Image.fromarray(a_out.astype(np.uint8)).resize(size, Image.Resampling.BOX)
        )
    r_in, r_out = read(a_in), read(a_out)
    got = r_out.attributes()
    attrs = {f"{k}_ok": got[k] == v for k, v in target.items()}
    target_ok = all(attrs.values())
    found = r_in.found and r_out.found
    shift = math.dist(r_in.centre, r_out.centre) if found else math.inf
    side_change = abs(r_out.side - r_in.side) / r_in.side if found else math.inf
    keep_bg = "background" not in changes
    region = ~(dilate(r_in.mask, 3) | dilate(r_out.mask, 3))
    bg_psnr = psnr(a_in[region], a_out[region]) if region.any() else float("nan")
    bg_ok = (bg_psnr >= MIN_BACKGROUND_PSNR) if keep_bg else True
    drawn = cleanliness(a_out, r_out)
    clean = drawn.clean if drawn is not None else None
    src = r_in.attributes()
    leaked = [k for k in changes if src.get(k) is not None and got.get(k) == src[k]]
    return {
        "success": bool(
            target_ok
            and shift <= MAX_CENTRE_SHIFT
            and side_change <= MAX_SIDE_CHANGE
            and bg_ok
            and bool(clean)
        ),
        "target_ok": bool(target_ok),
        **attrs,
        "position_ok": bool(shift <= MAX_CENTRE_SHIFT),
        "size_ok": bool(side_change <= MAX_SIDE_CHANGE),
        "clean": clean,
        "uniformity": round(drawn.uniformity, 2) if drawn else None,
        "colour_offset": round(drawn.colour_offset, 2) if drawn else None,
        "rim": round(drawn.rim, 2) if drawn else None,
        "fringe": round(drawn.fringe, 2) if drawn else None,
        "background_kept": bool(bg_ok) if keep_bg else None,
        "background_psnr": round(bg_psnr, 3),
        "psnr": round(psnr(a_in, a_out), 3),
        "centre_shift": round(shift, 3) if math.isfinite(shift) else None,
        "side_change": round(side_change, 4) if math.isfinite(side_change) else None,
        "leakage": bool(leaked),
        "leaked": ",".join(leaked),
        "read_shape": got["shape"],
        "read_colour": got["colour"],
        "read_background": got["background"],
    }
