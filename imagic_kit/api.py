"""``edit()`` and ``edit_sweep()``: the functional entry points, thin wrappers of the lifecycle
(``lifecycle.py``: check, fit or reuse, draw, select, recipe) that the pipelines also run.

``edit(backbone, image, prompt, method=...)`` is :func:`lifecycle.prepare` then
:func:`lifecycle.run`; nothing is kept between calls unless a fit is passed back in
(``artifacts=result.fit``). The pipelines (``pipelines.py``) keep their last fits themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from .artifacts import Fit
from .backbone import Backbone
from .lifecycle import run, run_sweep
from .progress import Callback
from .registry import get_method
from .request import (  # noqa: F401 - the public names of this module since its first release
    EditInputs,
    EditResult,
    check_backbone,
    check_components,
    check_inputs,
    check_request,
    check_sweep_keys,
    library_versions,
    prepare,
)


def edit(
    backbone: Backbone,
    image: str | Path | Image.Image | list[str | Path | Image.Image],
    prompt: str,
    *,
    method: str,
    source_prompt: str | None = None,
    seed: int | None = None,
    config: Any = None,
    preset: str | None = None,
    artifacts: str | Path | Fit | None = None,
    save_artifacts: str | Path | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    resize: str = "crop",
    **overrides: Any,
) -> EditResult:
    """Edit ``image`` so that it matches ``prompt`` with ``method``.

    Args:
        image: a path, a PIL image, or a list of them (methods taking several references).
        prompt: the target text.
        source_prompt: a caption of the input, for methods that use one.
        seed: makes the edit reproducible on any device; random (and recorded) when None.
        config: the method's config dataclass or a dict of overrides; ``preset`` names a YAML preset.
        artifacts: a saved fit (folder or :class:`Fit`) to reuse: only sample-stage settings,
            the target prompt (unless the fit depends on it) and the seed may differ.
        save_artifacts: folder to write the fit to (safetensors + run.json).
        callback: ``callback(stage, step, total, info)`` for progress.
        resize: how a non-square input is made square: ``crop``, ``stretch`` or ``pad``.
        **overrides: config fields, e.g. ``guidance_scale=5``.

    Returns: :class:`EditResult` with ``images`` (PIL, at the model's resolution), the fit, the
    config used, the seed, timings (``fit_s``, ``sample_s``) and the recipe written into PNGs.
    """
    check_backbone(get_method(method), backbone)  # first: a model that cannot run it
    req = prepare(
        image,
        prompt,
        method=method,
        source_prompt=source_prompt,
        seed=seed,
        config=config,
        preset=preset,
        artifacts=artifacts,
        save_artifacts=save_artifacts,
        resize=resize,
        **overrides,
    )
    result = run(backbone, req, progress=progress, callback=callback)
    assert result is not None
    return result


def edit_sweep(
    backbone: Backbone,
    image: Any,
    prompt: str,
    *,
    method: str,
    sweep: dict[str, list[Any]],
    **kwargs: Any,
) -> list[EditResult]:
    """Run ``edit`` for every combination of ``sweep`` values, fitting once when only sample-stage
    fields are swept (e.g. Imagic's ``eta``); returns one :class:`EditResult` per combination, in
    order. Each result's recipe records its ``sweep`` values.

    Every combination is drawn with the one seed (``seed``, or one drawn at random), so that they
    differ only in the swept values.

    Example: ``edit_sweep(bb, "in.png", "a blue circle", method="imagic", sweep={"eta": [0.5, 0.7, 0.9]})``.
    """
    check_backbone(get_method(method), backbone)  # first: a model that cannot run it
    check_sweep_keys(get_method(method), sweep)
    progress = kwargs.pop("progress", True)
    callback = kwargs.pop("callback", None)
    req = prepare(image, prompt, method=method, **kwargs)
    return run_sweep(backbone, req, sweep, progress=progress, callback=callback)
