"""The shapes world, version 1 (docs/design.md, "The shapes world"): a synthetic world whose ground
truth is known.

64x64 RGB images of one object (circle, square or triangle, in one of four colours) on a textured
background (white, gray or black). The texture is what no caption mentions, so an edit that keeps
it is faithful. Object size and position are never captioned either, so an edit must keep them.

Texture strength: two different textures of one colour must score well under the benchmark's
25 dB background bar against each other (~21 dB, never above ~24), so that a kept texture and a
redrawn one are told apart. A gentler texture (std ~9 grey levels) would give ~27 dB between two
independent textures and pass a redrawn background; the 5x5 grid has std 18, which after bicubic
upsampling is a texture of std ~15 and gives 21.4 dB mean, ~23.7 dB max between textures."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 40),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "black": (30, 30, 30),
}
MIN_SIDE, MAX_SIDE = 18, 34
TEXTURE_GRID = 5
TEXTURE_GRID_STD = 18.0
SUPERSAMPLE = 4
#: Every word a caption can use (the embedded model's vocabulary).
VOCABULARY = ("a", "on", "background", *SHAPES, *COLOURS, *BACKGROUNDS)


@dataclass(frozen=True)
class Scene:
    """One scene. ``x0, y0`` is the bounding box's top-left pixel corner, ``side`` its side in px."""

    shape: str
    colour: str
    background: str
    x0: int
    y0: int
    side: int
    texture_seed: int

    @property
    def centre(self) -> tuple[float, float]:
        """Bounding-box centre in pixel-edge coordinates (x, y)."""
        return (self.x0 + self.side / 2, self.y0 + self.side / 2)

    def with_(self, **changes) -> Scene:
        return Scene(**{**asdict(self), **changes})

    def caption(self, with_background: bool = True) -> str:
        return caption(self.shape, self.colour, self.background if with_background else None)


def caption(shape: str, colour: str, background: str | None = None) -> str:
    text = f"a {colour} {shape}"
    return f"{text} on a {background} background" if background else text


def all_captions(with_background: bool | None = None) -> list[str]:
    """Every caption of the world: 36 with a background, 12 without (``None``: all 48)."""
    out = []
    for shape in SHAPES:
        for colour in COLOURS:
            if with_background in (None, False):
                out.append(caption(shape, colour))
            if with_background in (None, True):
                out.extend(caption(shape, colour, bg) for bg in BACKGROUNDS)
    return out


def parse_caption(text: str) -> dict[str, str | None]:
    """``"a red circle on a gray background"`` -> ``{"shape": "circle", "colour": "red", "background": "gray"}``."""
    words = text.lower().replace(",", " ").split()
    found: dict[str, str | None] = {"shape": None, "colour": None, "background": None}
    for i, w in enumerate(words):
        if w in SHAPES:
            found["shape"] = w
        elif w in COLOURS and found["colour"] is None and "on" not in words[:i]:
            found["colour"] = w
        elif w in BACKGROUNDS or (w in COLOURS and "on" in words[:i]):
            found["background"] = w if w in BACKGROUNDS else found["background"]
    return found


def texture(seed: int, size: int = SIZE) -> np.ndarray:
    """Smooth random texture [size, size, 3] (float32, zero mean): a 5x5 normal grid per channel, bicubic."""
    rng = np.random.default_rng(seed)
    chans = []
    for _ in range(3):
        grid = rng.normal(0.0, TEXTURE_GRID_STD, (TEXTURE_GRID, TEXTURE_GRID)).astype(np.float32)
        chans.append(
            np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.Resampling.BICUBIC))
        )
    return np.stack(chans, -1)


def shape_coverage(
    shape: str, x0: float, y0: float, side: float, size: int = SIZE, ss: int = SUPERSAMPLE
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of ``shape`` with bounding box (x0, y0, side), [size, size]."""
    big = Image.new("L", (size * ss, size * ss), 0)
    d = ImageDraw.Draw(big)
    x1, y1 = x0 + side, y0 + side
    box = [x0 * ss, y0 * ss, x1 * ss - 1, y1 * ss - 1]
    if shape == "circle":
        d.ellipse(box, fill=255)
    elif shape == "square":
        d.rectangle(box, fill=255)
    elif shape == "triangle":  # isosceles, apex up, base = height = side
        d.polygon(
            [
                (x0 * ss, y1 * ss - 1),
                (x1 * ss - 1, y1 * ss - 1),
                ((x0 + side / 2) * ss - 0.5, y0 * ss),
            ],
            fill=255,
        )
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    a = np.asarray(big, dtype=np.float32) / 255.0
    return a.reshape(size, ss, size, ss).mean(axis=(1, 3))


def render(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """Render a scene -> (RGB image, boolean object mask [64, 64] where coverage >= 0.5)."""
    bg = np.array(BACKGROUNDS[scene.background], np.float32) + texture(scene.texture_seed)
    cov = shape_coverage(scene.shape, scene.x0, scene.y0, scene.side)[..., None]
    img = bg * (1 - cov) + np.array(COLOURS[scene.colour], np.float32) * cov
    arr = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB"), cov[..., 0] >= 0.5


def random_scene(rng: np.random.Generator, **fixed) -> Scene:
    """A uniformly random scene; keyword arguments fix any attribute."""
    side = int(fixed.pop("side", rng.integers(MIN_SIDE, MAX_SIDE + 1)))
    attrs = {
        "shape": str(rng.choice(SHAPES)),
        "colour": str(rng.choice(list(COLOURS))),
        "background": str(rng.choice(list(BACKGROUNDS))),
        "x0": int(rng.integers(0, SIZE - side + 1)),
        "y0": int(rng.integers(0, SIZE - side + 1)),
        "side": side,
        "texture_seed": int(rng.integers(0, 2**31)),
    }
    attrs.update(fixed)
    return Scene(**attrs)


def random_scenes(n: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [random_scene(rng) for _ in range(n)]


def render_batch(scenes: list[Scene]) -> np.ndarray:
    """Scenes -> uint8 array [N, 64, 64, 3]."""
    return np.stack([np.asarray(render(s)[0]) for s in scenes])
