"""imagic-kit: edit a real photo from a text prompt with a pretrained diffusion model.

Public API::

    from imagic_kit import ImagicPipeline  # a pipeline per method: PTIPipeline, ...
    pipe = ImagicPipeline.from_pretrained("tiny-shapes")  # the embedded model
    out = pipe("photo.png", "a blue circle", generator=torch.Generator().manual_seed(0))
    out.images[0].save("out.png")

    from imagic_kit import load_backbone, edit  # the same edit as a function
    result = edit(load_backbone("tiny-shapes"), "photo.png", "a blue circle", method="imagic", seed=0)
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
    "EditPipeline": "pipelines",
    "EditPipelineOutput": "pipelines",
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
    import importlib

    if name not in _LAZY:
        if name.endswith("Pipeline"):  # every registered method's pipeline: ImagicPipeline, ...
            value = getattr(importlib.import_module(".pipelines", __name__), name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'imagic_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(__all__))


__all__ = [
    "DDIMPipeline",
    "DecorPipeline",
    "EditPipeline",
    "EditPipelineOutput",
    "EditResult",
    "FastEditPipeline",
    "ImagicPipeline",
    "NullTextPipeline",
    "PTIPipeline",
    "SDEditPipeline",
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
