"""The shapes world: renderer follows the spec, the oracle reads scenes back."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo_like
from PIL import Image, ImageFilter

from imagic_kit.shapes import (
    BACKGROUNDS,
    Scene,
    all_captions,
    parse_caption,
    random_scenes,
    read,
    render,
)
from imagic_kit.shapes.world import texture


def _accuracy(images_and_scenes):
    hits = {"shape": 0, "colour": 0, "background": 0, "centre": 0}
    for img, s in images_and_scenes:
        r = read(img)
        hits["shape"] += r.shape == s.shape
        hits["colour"] += r.colour == s.colour
        hits["background"] += r.background == s.background
        hits["centre"] += (
            r.centre is not None
            and max(abs(r.centre[0] - s.centre[0]), abs(r.centre[1] - s.centre[1])) <= 1
        )
    return {k: v / len(images_and_scenes) for k, v in hits.items()}


def test_oracle_reads_rendered_scenes():
    scenes = random_scenes(400, seed=2024)
    acc = _accuracy([(render(s)[0], s) for s in scenes])
    assert all(v >= 0.99 for v in acc.values()), acc


def test_oracle_reads_blurry_off_colour_images():
    rng = np.random.default_rng(0)
    pairs = []
    for s in random_scenes(150, seed=7):
        img = render(s)[0].filter(ImageFilter.GaussianBlur(1.0))
        a = np.asarray(img, np.float32) + rng.normal(0, 12, 3)  # a global colour cast
        pairs.append((np.clip(a, 0, 255), s))
    acc = _accuracy(pairs)
    assert acc["shape"] >= 0.9 and acc["colour"] >= 0.97 and acc["background"] >= 0.97, acc


def test_no_object_is_reported():
    for bg in BACKGROUNDS:
        a = np.clip(np.array(BACKGROUNDS[bg], np.float32) + texture(5), 0, 255)
        r = read(a)
        assert not r.found and r.background == bg and r.shape is None


def test_render_spec():
    s = Scene("triangle", "yellow", "black", x0=10, y0=20, side=30, texture_seed=1)
    img, mask = render(s)
    assert img.size == (64, 64) and mask.shape == (64, 64)
    assert np.array_equal(np.asarray(img), np.asarray(render(s)[0]))  # deterministic
    ys, xs = np.nonzero(mask)
    assert xs.min() == 10 and xs.max() == 39 and ys.max() == 49
    assert 0.45 < mask.sum() / 900 < 0.55  # half the bounding box: a triangle
    assert np.abs(np.asarray(img)[ys, xs].astype(int) - (235, 200, 40)).max() <= 60


def test_texture_strength_matches_fidelity_separation():
    """Two textures of one colour score ~21 dB against each other, never above ~24."""
    psnrs = []
    for i in range(100):
        a = np.clip(128 + texture(2 * i), 0, 255)
        b = np.clip(128 + texture(2 * i + 1), 0, 255)
        psnrs.append(10 * np.log10(255**2 / ((a - b) ** 2).mean()))
    assert 20 <= np.mean(psnrs) <= 23 and max(psnrs) < 24.5


def test_captions():
    caps = all_captions()
    assert len(caps) == 48 and len(set(caps)) == 48
    assert parse_caption("a red circle on a gray background") == {
        "shape": "circle",
        "colour": "red",
        "background": "gray",
    }
    assert parse_caption("a blue square") == {
        "shape": "square",
        "colour": "blue",
        "background": None,
    }


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_oracle_mask_matches_render(shape):
    s = Scene(shape, "green", "gray", x0=15, y0=12, side=26, texture_seed=3)
    img, mask = render(s)
    r = read(Image.fromarray(np.asarray(img)))
    iou = (r.mask & mask).sum() / (r.mask | mask).sum()
    assert iou > 0.95 and r.side == pytest.approx(26, abs=1)


def test_scenes_look_like_the_shapes_world_and_photos_do_not():
    from imagic_kit.shapes import render
    from imagic_kit.shapes.oracle import looks_like_scene
    from imagic_kit.shapes.world import random_scenes

    assert all(looks_like_scene(render(s)[0]) for s in random_scenes(40, 3))
    assert not any(looks_like_scene(photo_like(i)) for i in range(8))
    assert not looks_like_scene(Image.new("RGB", (64, 64), (120, 170, 230)))  # a sky, no object
