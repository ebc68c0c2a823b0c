"""The oracle: read shape, colour, background, bounding box and object mask back from any 64x64 image.

Works on rendered scenes and on model outputs (blurry, off-colour):

1. background: nearest background colour to the median of the image border;
2. object pixels: pixels closer to some object colour than to that background colour; the object
   colour is the one most such pixels are nearest to, and the mask is the largest 4-connected
   component of pixels nearest to it (stray texture pixels drop out);
3. shape: the best intersection-over-union between the mask and each shape's template drawn in the
   mask's bounding box; colour: nearest palette colour of the median of the mask's core;
4. "no object" when the mask is smaller than a third of the smallest object's area.

:func:`cleanliness` judges how the object is drawn: every object of the world is flat, in its
palette colour, with a clean edge against the background, so a mottled, off-colour or fringed
object is measured apart from what the object reads as.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .world import BACKGROUNDS, COLOURS, MIN_SIDE, SHAPES, shape_coverage

_OBJ = np.array(list(COLOURS.values()), np.float32)  # [4, 3]
_BG = np.array(list(BACKGROUNDS.values()), np.float32)  # [3, 3]
MIN_AREA = MIN_SIDE * MIN_SIDE // 2 // 3  # a third of the smallest triangle


@dataclass
class Reading:
    """What the oracle reads. ``shape``/``colour`` are None when no object is found."""

    shape: str | None
    colour: str | None
    background: str
    centre: tuple[float, float] | None  # bounding-box centre (x, y), pixel-edge coordinates
    side: float | None  # max(bbox width, bbox height)
    mask: np.ndarray  # bool [H, W]
    shape_score: float = 0.0  # IoU with the best template

    @property
    def found(self) -> bool:
        return self.shape is not None

    def attributes(self) -> dict[str, str | None]:
        return {"shape": self.shape, "colour": self.colour, "background": self.background}


def _as_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {a.shape}")
    return a


def _largest_component(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    seen = np.zeros_like(m, dtype=bool)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(m)):
        if seen[y0, x0]:
            continue
        comp, q = [], deque([(y0, x0)])
        seen[y0, x0] = True
        while q:
            y, x = q.popleft()
            comp.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and m[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    q.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(m, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation with a (2r+1) square (numpy only)."""
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:, :] |= out[:-1, :]
        m[:-1, :] |= out[1:, :]
        m[:, 1:] |= out[:, :-1]
        m[:, :-1] |= out[:, 1:]
        m[1:, 1:] |= out[:-1, :-1]
        m[:-1, :-1] |= out[1:, 1:]
        m[1:, :-1] |= out[:-1, 1:]
        m[:-1, 1:] |= out[1:, :-1]
        out = m
    return out


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~dilate(~mask, r)


def _core(mask: np.ndarray, r: int) -> np.ndarray:
    """The mask eroded by ``r`` px, or by less where that leaves under 10 px a radius (a small
    or thin object): the pixels whose colour is the object's own, away from its blended edge."""
    for radius in range(r, 0, -1):
        core = erode(mask, radius)
        if core.sum() >= 10 * radius:
            return core
    return mask


def nearest(colour: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    d = ((np.array(list(palette.values()), np.float32) - colour) ** 2).sum(-1)
    return names[int(d.argmin())]


def read(image) -> Reading:
    """Read a scene back from an RGB image (PIL or array [H, W, 3] in 0..255)."""
    a = _as_array(image)
    h, w, _ = a.shape
    border = np.concatenate(
        [
            a[:2].reshape(-1, 3),
            a[-2:].reshape(-1, 3),
            a[:, :2].reshape(-1, 3),
            a[:, -2:].reshape(-1, 3),
        ]
    )
    bg_name = nearest(np.median(border, 0), BACKGROUNDS)
    bg = np.array(BACKGROUNDS[bg_name], np.float32)
    d_obj = ((a[:, :, None, :] - _OBJ) ** 2).sum(-1)  # [H, W, 4]
    d_bg = ((a - bg) ** 2).sum(-1)
    nearest_obj = d_obj.argmin(-1)
    is_obj = d_obj.min(-1) < d_bg
    empty = np.zeros((h, w), bool)
    if is_obj.sum() < MIN_AREA:
        return Reading(None, None, bg_name, None, None, empty)
    counts = np.bincount(nearest_obj[is_obj], minlength=len(COLOURS))
    k = int(counts.argmax())
    mask = _largest_component(is_obj & (nearest_obj == k))
    if mask.sum() < MIN_AREA:
        return Reading(None, None, bg_name, None, None, empty)
    # background again, now from everything outside the (dilated) object
    outside = ~dilate(mask, 2)
    if outside.sum() > 50:
        bg_name = nearest(np.median(a[outside], 0), BACKGROUNDS)
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    bw, bh = x1 - x0, y1 - y0
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        # templates are drawn in the bbox (an ellipse / rectangle / triangle of the bbox's aspect)
        t = _template(shape, x0, y0, bw, bh, h, w)
        iou = float((t & mask).sum() / max((t | mask).sum(), 1))
        if iou > best_iou:
            best, best_iou = shape, iou
    colour = nearest(np.median(a[_core(mask, 1)], 0), COLOURS)
    return Reading(
        best, colour, bg_name, ((x0 + x1) / 2, (y0 + y1) / 2), float(max(bw, bh)), mask, best_iou
    )


#: Cleanliness bars (RGB distances, 0-255), set above the worst of the VAE reconstructions of the
#: full and holdout suites' 96 inputs (the model cannot draw cleaner than its own decoder:
#: uniformity 5.4, colour offset 10.5, rim 3.9, fringe 4.3) and under the objects that look
#: mottled, off-colour or fringed (docs/benchmarks.md, "Cleanliness").
MAX_UNIFORMITY = 8.0
MAX_COLOUR_OFFSET = 35.0
MAX_RIM = 8.0
MAX_FRINGE = 10.0


@dataclass
class Cleanliness:
    """How cleanly the object is drawn: every object of the world is flat, in its palette colour,
    with an edge that blends into the background. RGB distances on the 0-255 scale.

    - ``uniformity``: mean distance of the object's inner pixels (the mask eroded by 2 px, by 1
      for a small object) from their median: mottling.
    - ``colour_offset``: distance of that median from the palette colour the object reads as: an
      off-colour object (a teal one read as blue).
    - ``rim``: how far the object's edge pixels (the mask outside its inner pixels) overshoot its
      colour, away from the background, on average: a bright or dark outline.
    - ``fringe``: the colour, other than the object's own hue, of the 1-px ring outside the
      object, in excess of the background's (mean over the ring, less the mean 4-6 px out): a
      rim of another colour, such as the old object's.
    """

    uniformity: float
    colour_offset: float
    rim: float
    fringe: float

    @property
    def clean(self) -> bool:
        return (
            self.uniformity <= MAX_UNIFORMITY
            and self.colour_offset <= MAX_COLOUR_OFFSET
            and self.rim <= MAX_RIM
            and self.fringe <= MAX_FRINGE
        )


def _chroma(x: np.ndarray) -> np.ndarray:
    return x - x.mean(-1, keepdims=True)


def cleanliness(image, reading: Reading | None = None) -> Cleanliness | None:
    """How cleanly the object of ``image`` is drawn; None when no object is found."""
    a = _as_array(image)
    r = reading if reading is not None else read(a)
    if not r.found:
        return None
    inner = _core(r.mask, 2)
    median = np.median(a[inner], 0)
    uniformity = float(np.sqrt(((a[inner] - median) ** 2).sum(-1)).mean())
    offset = float(np.sqrt(((median - np.array(COLOURS[r.colour], np.float32)) ** 2).sum()))
    band = dilate(r.mask, 6) & ~dilate(r.mask, 3)
    if not band.any():  # the object fills the image
        return Cleanliness(uniformity, offset, 0.0, 0.0)
    background = np.median(a[band], 0)
    edge = r.mask & ~inner
    to_object = median - background
    length = float(np.sqrt((to_object**2).sum()))
    rim = 0.0
    if edge.any() and length > 1e-3:
        t = ((a[edge] - background) @ to_object) / length**2  # 0 background .. 1 object colour
        rim = float((np.clip(t - 1.0, 0.0, None) * length).mean())
    hue = _chroma(median)
    hue = hue / max(float(np.sqrt((hue**2).sum())), 1e-6)

    def other_hue(p: np.ndarray) -> float:
        c = _chroma(p)
        return float(np.sqrt(((c - (c @ hue)[:, None] * hue) ** 2).sum(-1)).mean())

    ring = dilate(r.mask, 1) & ~r.mask
    fringe = other_hue(a[ring]) - other_hue(a[band]) if ring.any() else 0.0
    return Cleanliness(uniformity, offset, rim, fringe)


def _template(shape: str, x0: int, y0: int, bw: int, bh: int, h: int, w: int) -> np.ndarray:
    side = max(bw, bh)
    cov = shape_coverage(shape, 0, 0, side, size=side, ss=2)
    img = Image.fromarray((cov * 255).astype(np.uint8), "L").resize(
        (bw, bh), Image.Resampling.BILINEAR
    )
    out = np.zeros((h, w), bool)
    out[y0 : y0 + bh, x0 : x0 + bw] = np.asarray(img) >= 128
    return out


#: A rendered scene has >= 98% of its pixels within this RGB distance of its object or background
#: colour (200 random scenes); photos and other pictures have about half.
_NEAR = 70.0
_SCENE_SHARE = 0.85


def looks_like_scene(image) -> bool:
    """Whether ``image`` (RGB, at 64x64) looks like a scene of the shapes world: an object found,
    of a clear shape, and most pixels near its colour or the background's. Used to warn that the
    embedded model, which knows nothing else, was given something else (a photo)."""
    a = _as_array(image)
    r = read(a)
    if not r.found or r.shape_score < 0.8:
        return False
    cols = np.array([BACKGROUNDS[r.background], COLOURS[r.colour]], np.float32)
    d = np.sqrt(((a[:, :, None, :] - cols) ** 2).sum(-1)).min(-1)
    return float((d < _NEAR).mean()) >= _SCENE_SHARE
