"""Image input and output: loading any reasonable image safely, tensors, PNGs with their recipe.

Input policy (documented in the README): EXIF orientation is applied; transparency (RGBA, LA,
P with a transparent colour) is composited on white; CMYK, 16-bit, float and grayscale images are
converted to 8-bit RGB; by default the image is centre-cropped to a square and resized to the
model's resolution (``resize="crop"``), or squashed (``"stretch"``) or padded with white
(``"pad"``). Outputs are at the model's resolution.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import InputImageError

if TYPE_CHECKING:  # torch loads where a function needs it: `imagic-kit recipe` reads PNGs only
    import torch

#: Images larger than this are refused before decoding (a decompression bomb, or a mistake).
MAX_PIXELS = 50_000_000
RESIZE_MODES = ("crop", "stretch", "pad")
#: The PNG text chunk that carries an output's recipe.
RECIPE_KEY = "imagic-kit"


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        # 16-bit PNGs open as I;16 or I (32-bit ints holding 16-bit values).
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        a = np.asarray(img, dtype=np.float64)
        top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV
    return img


def load_image(source: str | os.PathLike | Image.Image, *, name: str = "image") -> Image.Image:
    """Open ``source`` (a path, a PIL image or a uint8 array) as an upright 8-bit RGB PIL image.

    Raises :class:`InputImageError` with a one-line fix for missing, corrupt or oversized files.
    """
    if isinstance(source, np.ndarray):  # an [H, W, 3] or [H, W] uint8 array
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise InputImageError(
                f"{name}: an array must be uint8 [H, W, 3] or [H, W], got {source.dtype} "
                f"{list(source.shape)}"
            )
        source = Image.fromarray(source)
    if not isinstance(source, str | os.PathLike | Image.Image):
        raise InputImageError(
            f"{name} must be a file path or a PIL image, got {type(source).__name__}"
        )
    if isinstance(source, Image.Image):
        label = f"{name} (PIL image)"
        img = source
        try:
            img.load()
        except (ValueError, OSError) as e:  # closed or truncated in memory
            raise InputImageError(f"{label} cannot be read ({e}); pass an open image") from None
        if img.width * img.height > MAX_PIXELS:
            raise InputImageError(
                f"{label} is {img.width}x{img.height} = {img.width * img.height / 1e6:.0f} megapixels, "
                f"over the {MAX_PIXELS // 1_000_000} MP limit; downscale it first"
            )
    else:
        path = Path(source)
        label = f"{name} '{path}'"
        if not path.exists():
            raise InputImageError(f"{label} does not exist; check the path")
        if path.is_dir():
            raise InputImageError(f"{label} is a folder; pass an image file")
        if not path.is_file():  # a pipe or a device: reading it could block forever
            raise InputImageError(f"{label} is not a regular file; pass an image file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
                if img.width * img.height > MAX_PIXELS:
                    raise InputImageError(
                        f"{label} is {img.width}x{img.height} = {img.width * img.height / 1e6:.0f} "
                        f"megapixels, over the {MAX_PIXELS // 1_000_000} MP limit; downscale it first"
                    )
                img.load()
        except InputImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputImageError(
                f"{label} is too large to decode safely (over {MAX_PIXELS // 1_000_000} MP); downscale it first"
            ) from None
        except UnidentifiedImageError:
            raise InputImageError(
                f"{label} is not an image Pillow can read; convert it to PNG or JPEG"
            ) from None
        except (OSError, SyntaxError, ValueError) as e:
            raise InputImageError(
                f"{label} is corrupt or truncated ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                "re-export or re-download it"
            ) from None
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated GIF/WebP, multi-page TIFF: the first frame
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        pass
    if img.width < 8 or img.height < 8:
        raise InputImageError(
            f"{label} is only {img.width}x{img.height} pixels; use an image of at least 8x8"
        )
    return _to_rgb(img)


def fit_to_square(img: Image.Image, size: int, mode: str = "crop") -> Image.Image:
    """Resize ``img`` to ``size`` x ``size`` by centre crop, stretch, or white padding."""
    if mode not in RESIZE_MODES:
        raise InputImageError(
            f"resize mode {mode!r} is unknown; choose one of: {', '.join(RESIZE_MODES)}"
        )
    if mode == "crop":
        return ImageOps.fit(img, (size, size), Image.Resampling.LANCZOS)
    if mode == "stretch":
        return img.resize((size, size), Image.Resampling.LANCZOS)
    return ImageOps.pad(img, (size, size), Image.Resampling.LANCZOS, color=(255, 255, 255))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) ``x`` blurred channel by channel with a separable Gaussian of ``sigma`` px
    (edges replicated)."""
    import torch

    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    w = torch.exp(-(t**2) / (2 * sigma**2))
    w = (w / w.sum()).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, k)
    x = torch.nn.functional.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = torch.nn.functional.conv2d(x, w, groups=w.shape[0])
    x = torch.nn.functional.pad(x, (0, 0, radius, radius), mode="replicate")
    return torch.nn.functional.conv2d(x, w.transpose(2, 3), groups=w.shape[0])


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL -> float tensor [1, 3, H, W] in [-1, 1]."""
    import torch

    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """Float tensor [B, 3, H, W] in [-1, 1] -> list of RGB PIL images."""
    import torch

    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).numpy(), "RGB") for a in x]


def image_hash(img: Image.Image) -> str:
    """SHA-256 of the normalised pixels and size: identifies an input independently of its file."""
    h = hashlib.sha256()
    h.update(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def json_text(obj: Any, indent: int | None = 2) -> str:
    """JSON of ``obj`` (keys sorted) that is always valid JSON: non-finite floats, which
    ``json.dumps`` would write as the invalid tokens NaN and Infinity, become strings."""
    return json.dumps(_finite(obj), indent=indent, sort_keys=True, default=str, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def save_png(
    img: Image.Image, path: str | os.PathLike, recipe: dict[str, Any] | None = None
) -> Path:
    """Write ``img`` as PNG with ``recipe`` as JSON in a text chunk, atomically.

    The file appears complete or not at all: an error never leaves a truncated PNG or clobbers an
    existing file with a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if recipe is not None:
        info.add_text(RECIPE_KEY, json_text(recipe, indent=None))
        if "prompt" in recipe:
            info.add_text("Description", str(recipe["prompt"]))
        info.add_text(
            "Software", f"imagic-kit {recipe.get('versions', {}).get('imagic_kit', '')}".strip()
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return write_atomic(path, buf.getvalue())


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then a rename: the
    file appears complete or not at all, and an error never clobbers an existing one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give (mkstemp makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def read_recipe(path: str | os.PathLike) -> dict[str, Any] | None:
    """The recipe stored in an output PNG by :func:`save_png`, or None."""
    with Image.open(path) as img:
        text = img.text.get(RECIPE_KEY) if hasattr(img, "text") else None
    return json.loads(text) if text else None


def make_grid(
    images: list[Image.Image], cols: int | None = None, labels: list[str] | None = None
) -> Image.Image:
    """Tile equally sized images into one (used for sweeps and multi-image outputs).

    Small images whose labels would not fit above them (e.g. ``finetune_late_strength=0.7`` over a
    64 px tile) are enlarged by a whole factor (up to 4, nearest neighbour: the pixels stay exact).
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    cols = cols or len(images)
    rows = (len(images) + cols - 1) // cols
    w, h = images[0].size
    pad = 12 if labels else 0
    if labels:
        from PIL import ImageDraw

        text_w = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t) for t in labels) + 4
        k = min(4, math.ceil(text_w / w))
        if k > 1:
            w, h = w * k, h * k
            images = [im.resize((w, h), Image.NEAREST) for im in images]
    grid = Image.new("RGB", (cols * w, rows * (h + pad)), (255, 255, 255))
    if labels:
        draw = ImageDraw.Draw(grid)
    for i, im in enumerate(images):
        x, y = (i % cols) * w, (i // cols) * (h + pad)
        grid.paste(im.resize((w, h)), (x, y + pad))
        if labels:
            draw.text((x + 2, y), labels[i], fill=(0, 0, 0))
    return grid
