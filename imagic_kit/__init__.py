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

# The public names load on first use (PEP 562), so that ``imagic-kit --help``, ``list`` and
# ``recipe`` start without importing torch and the model stack.
_LAZY = {
    "EditResult": "api",
    "edit": "api",
    "Fit": "artifacts",
    "ImagicKitError": "errors",
    "load_backbone": "models",
    "MethodSpec": "registry",
    "available_methods": "registry",
    "get_method": "registry",
    "make_config": "registry",
    "register_method": "registry",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'imagic_kit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


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
