"""Odd and bad input images: each is converted or refused with a one-line fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagic_kit import imaging
from imagic_kit.errors import InputImageError
from imagic_kit.imaging import (
    fit_to_square,
    image_hash,
    load_image,
    make_grid,
    read_recipe,
    save_png,
)


def test_corrupt_file_is_refused(tmp_path):
    p = tmp_path / "broken.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(p)
    p.write_bytes(p.read_bytes()[:60])  # truncated
    with pytest.raises(InputImageError, match="corrupt or truncated"):
        load_image(p)
    q = tmp_path / "text.jpg"
    q.write_text("not an image")
    with pytest.raises(InputImageError, match="not an image Pillow can read"):
        load_image(q)


def test_missing_and_folder(tmp_path):
    with pytest.raises(InputImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputImageError, match="is a folder"):
        load_image(tmp_path)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(p)  # red in CMYK
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (40, 30)
    r, g, b = img.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "deep.png"
    a = np.full((32, 32), 32768, dtype=np.uint16)
    Image.fromarray(a).save(p)
    img = load_image(p)
    assert img.mode == "RGB" and abs(img.getpixel((5, 5))[0] - 128) <= 1


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (60, 30), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 30))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(p, exif=exif, quality=95)
    up = load_image(p)
    assert up.size == (30, 60)
    assert up.getpixel((15, 3))[0] > 200 and up.getpixel((15, 57))[2] > 200  # red now on top


def test_transparency_is_composited_on_white(tmp_path):
    p = tmp_path / "alpha.png"
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    img.putpixel((5, 5), (0, 0, 255, 255))
    img.save(p)
    out = load_image(p)
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((5, 5)) == (0, 0, 255)
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([10, 20, 30] * 256)
    pal.info["transparency"] = 0
    assert load_image(pal).getpixel((1, 1)) == (255, 255, 255)


def test_grayscale_and_la(tmp_path):
    assert load_image(Image.new("L", (16, 16), 100)).getpixel((0, 0)) == (100, 100, 100)
    assert load_image(Image.new("LA", (16, 16), (100, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_oversized_and_tiny_images_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", 10_000)
    p = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(p)
    with pytest.raises(InputImageError, match="megapixels|too large"):
        load_image(p)
    with pytest.raises(InputImageError, match="at least 8x8"):
        load_image(Image.new("RGB", (4, 4)))


def test_fit_to_square_modes():
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    for mode in ("crop", "stretch", "pad"):
        assert fit_to_square(img, 64, mode).size == (64, 64)
    assert fit_to_square(img, 64, "pad").getpixel((32, 2)) == (255, 255, 255)
    with pytest.raises(InputImageError):
        fit_to_square(img, 64, "zoom")


def test_png_recipe_round_trip_and_atomic_write(tmp_path):
    p = tmp_path / "out.png"
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    save_png(img, p, {"prompt": "a", "seed": 1})
    assert read_recipe(p) == {"prompt": "a", "seed": 1}
    before = p.read_bytes()

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_png(img, p, {"bad": Boom()})
    assert p.read_bytes() == before  # the earlier file is intact
    assert [f.name for f in tmp_path.iterdir()] == ["out.png"]  # no temp file left behind


def test_hash_depends_on_pixels():
    a, b = Image.new("RGB", (8, 8), 0), Image.new("RGB", (8, 8), 1)
    assert image_hash(a) == image_hash(a.copy()) != image_hash(b)


def test_grid_enlarges_small_tiles_to_fit_their_labels():
    """A sweep over a long field name on 64 px images: the tiles grow by a whole factor (exact
    pixels, nearest neighbour) so each label fits over its own tile; short labels change nothing."""
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    labels = [f"finetune_late_strength={v}" for v in (0.4, 0.7, 1.0)]
    grid = make_grid(ims, labels=labels)
    k = grid.size[0] // (3 * 64)
    assert k > 1 and grid.size == (3 * 64 * k, 64 * k + 12)
    from PIL import ImageDraw

    assert max(ImageDraw.Draw(grid).textlength(t) for t in labels) <= 64 * k
    tile = np.asarray(grid)[12:, 64 * k : 128 * k]
    assert np.array_equal(tile, np.asarray(ims[1].resize((64 * k, 64 * k), Image.NEAREST)))
    assert make_grid(ims, labels=["eta=0", "eta=1", "eta=2"]).size == (3 * 64, 64 + 12)
