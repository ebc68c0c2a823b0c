"""Pipelines a diffusers user recognises: one class per registered method, on one base
(:class:`EditPipeline`, ``base.py``; its module handling in ``modules.py``, its output in
``output.py``). A method added to the registry has its ``<Title>Pipeline`` here with no code of
its own (:func:`pipeline_class`)."""

from __future__ import annotations

from ..registry import available_methods, get_method
from .base import EditPipeline
from .output import EditPipelineOutput

__all__ = ["EditPipeline", "EditPipelineOutput", "pipeline_class", "pipeline_classes"]


_CLASSES: dict[str, type[EditPipeline]] = {}


def pipeline_class(method: str) -> type[EditPipeline]:
    """The pipeline class of a registered method (``ImagicPipeline`` for ``imagic``), made once."""
    spec = get_method(method)
    if spec.name not in _CLASSES:
        name = f"{spec.display_name}Pipeline"
        doc = (
            f"{spec.description}.\n\nThe ``{spec.name}`` method as a pipeline (calls: "
            f":class:`EditPipeline`; fields: ``imagic-kit show-config {spec.name}``)."
        )
        attrs = {"method": spec.name, "__doc__": doc, "__module__": __name__}
        _CLASSES[spec.name] = type(name, (EditPipeline,), attrs)
    return _CLASSES[spec.name]


def pipeline_classes() -> dict[str, type[EditPipeline]]:
    """Every registered method's pipeline class, by class name."""
    return {cls.__name__: cls for cls in map(pipeline_class, available_methods())}


def __getattr__(name: str) -> type[EditPipeline]:  # ImagicPipeline, ... (PEP 562)
    if name.endswith("Pipeline"):
        found = pipeline_classes().get(name)
        if found is not None:
            return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
