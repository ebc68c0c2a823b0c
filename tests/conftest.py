"""Shared fixtures: tiny random backbones built from config (no network) and test images."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from imagic_kit.threads import configure_threads  # noqa: E402

configure_threads()


@pytest.fixture(scope="session")
def tiny_random():
    from imagic_kit import load_backbone

    return load_backbone("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def tiny(tiny_random):
    return tiny_random


@pytest.fixture(scope="session")
def shapes():
    """The embedded tiny-shapes model, for behaviour tests (loaded once per test run)."""
    from imagic_kit import load_backbone

    return load_backbone("tiny-shapes", device="cpu")


@pytest.fixture(scope="session")
def tiny_v():
    from imagic_kit import load_backbone

    return load_backbone("tiny-random-v", device="cpu")


def draw_scene(
    colour=(220, 40, 40), bg=(128, 128, 128), box=(20, 18, 46, 44), size=64
) -> Image.Image:
    img = Image.new("RGB", (size, size), bg)
    ImageDraw.Draw(img).ellipse(box, fill=colour)
    return img


@pytest.fixture
def scene_path(tmp_path):
    p = tmp_path / "scene.png"
    draw_scene().save(p)
    return p


def one_line(capsys, argv, match):
    """Run the CLI, expect a one-line refusal naming ``match``; returns stderr."""
    from imagic_kit.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("imagic-kit: error:"), err
    assert "Traceback" not in err and match in lines[0], lines[0]
    return err


def snapshot(folder):
    """Every file under ``folder`` with its bytes: what a refused command must leave as it was."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the CLI gets as far as loading a model: refusals must come first."""

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr("imagic_kit.models.load_backbone", refuse)


def photo_like(seed: int) -> Image.Image:
    """A blurred photo-like picture (noise and coloured blobs): not a shapes-world scene."""
    rng = np.random.default_rng(seed)
    g = rng.normal(0, 1, (6, 6, 3))
    im = Image.fromarray(np.uint8(np.clip(128 + 60 * g, 0, 255))).resize((64, 64), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(5):
        x, y = rng.integers(0, 60, 2)
        w, h = rng.integers(5, 25, 2)
        d.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im.filter(ImageFilter.GaussianBlur(1))


#: Good rows of a batch manifest written by :func:`manifest` (sdedit on the example image).
BATCH_ROWS = [
    "ex.png,a blue circle on a gray background,sdedit,0,0.5,4,",
    "ex.png,a blue circle on a gray background,sdedit,1,0.7,4,",
    "ex.png,a green circle,sdedit,2,0.6,4,green.png",
    "ex.png,a yellow circle,sdedit,3,0.6,4,",
    "ex.png,a red square,sdedit,4,0.6,4,",
    "ex.png,a red triangle,sdedit,5,0.6,4,",
]


def manifest(folder: Path, rows: list[str], name: str = "m.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(
        Path(__file__).resolve().parent.parent / "assets" / "example.png", folder / "ex.png"
    )
    path = folder / name
    path.write_text(
        "image,prompt,method,seed,strength,num_inference_steps,output\n" + "\n".join(rows) + "\n"
    )
    return path
