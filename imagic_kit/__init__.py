"""imagic-kit: edit a real photo from a text prompt with a pretrained diffusion model.

Public API::

    from imagic_kit import load_backbone, edit
    bb = load_backbone("tiny-shapes")  # the embedded model
    result = edit(bb, "photo.png", "a blue circle", method="sdedit", seed=0)
    result.image.save("out.png")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

try:
    __version__ = _version("imagic-kit")
except _NotInstalled:  # a source checkout on PYTHONPATH, never installed
    __version__ = "0.0.0+unknown"

from .api import EditResult, edit  # noqa: E402
from .artifacts import Fit  # noqa: E402
from .errors import ImagicKitError  # noqa: E402
from .models import load_backbone  # noqa: E402
from .registry import MethodSpec, available_methods, get_method, make_config, register_method  # noqa: E402

__all__ = [
    "EditResult",
    "Fit",
    "ImagicKitError",
    "MethodSpec",
    "available_methods",
    "edit",
    "get_method",
    "load_backbone",
    "make_config",
    "register_method",
]
