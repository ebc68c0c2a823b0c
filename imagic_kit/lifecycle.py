"""One edit's lifecycle, the same under every front end: check, fit or reuse, draw, select, recipe.

The CLI, ``edit()``, the pipelines (``pipelines/``), the demo, batch runs and the benchmark all
go through two functions: ``request.prepare`` and :func:`run` here::

    prepare(...)  -> EditRequest     the checks that need no model: the method, its config, the
                                     prompts, the images (read now), the seed, where a fit is saved,
                                     and a saved fit's method and fit-stage settings
    run(bb, req)  -> EditResult      with a model:
                                       1. normalise the image(s) to the model's resolution
                                       2. fit, or reuse a fit: the one given (checked), else one kept
                                          in a :class:`FitCache` under the key of what it depends on
                                       3. draw the samples the config asks for (``selection.draw``)
                                       4. select: rank, restore, keep the best (``selection.select``)
                                       5. the recipe

A fit depends on the method, the model, the input image(s), the fit-stage config and the inputs the
method names (``MethodSpec.fit_depends_on``: Imagic's target prompt, FastEdit's timestep range);
``fit_cache.fit_key`` is exactly that, the key a saved fit is checked with. ``fit_cache.FitCache`` is
the one place fits are kept in memory.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import torch

from .artifacts import Fit
from .backbone import Backbone
from .config import to_dict
from .errors import ArtifactMismatchError, NonFiniteOutputError, OutOfMemoryError
from .fit_cache import FitCache, fit_key, reusable
from .imaging import fit_to_square, image_hash, pil_to_tensor, tensor_to_pil
from .progress import Callback, ProgressOptions, StepEnd
from .request import (
    EditInputs,
    EditRequest,
    EditResult,
    check_backbone,
    library_versions,
    prepare,
    sweep_requests,
)
from .selection import draw, ranking_clip, select

__all__ = [
    "EditInputs",
    "EditRequest",
    "EditResult",
    "FitCache",
    "cached_fit",
    "fit_only",
    "prepare",
    "run",
    "run_sweep",
]


logger = logging.getLogger(__name__)


_TorchOOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class _Bound:
    """A request bound to a model: its normalised inputs and what a fit of it depends on."""

    inputs: EditInputs
    expected: dict[str, Any]  # the fit's key, as saved fits record it
    soft: list[str]  # keys of ``expected`` that are facts of the edit (refit when they differ)
    facts: dict[str, Any]


def _bind(backbone: Backbone, req: EditRequest) -> _Bound:
    spec, cfg = req.spec, req.config
    check_backbone(spec, backbone)
    pils = [fit_to_square(p, backbone.resolution, req.resize) for p in req.images]
    if backbone.check_input is not None and (why := backbone.check_input(pils)):
        warnings.warn(why, stacklevel=_caller_level())
    inputs = EditInputs(
        images=pils,
        pixels=torch.cat([pil_to_tensor(p) for p in pils]).to(backbone.device),
        prompt=req.prompt,
        source_prompt=req.source_prompt,
        hashes=[image_hash(p) for p in pils],
    )
    expected = {
        "method": spec.name,
        "model_id": backbone.model_id,
        "fit_config": to_dict(cfg, "fit"),
        "input_hashes": inputs.hashes,
    }
    facts = spec.facts(backbone, inputs, cfg)
    deps = spec.fit_inputs(cfg)
    expected.update({k: facts[k] if k in facts else getattr(inputs, k) for k in deps})
    return _Bound(inputs, expected, [k for k in deps if k in facts], facts)


def _oom(err: BaseException, backbone: Backbone) -> OutOfMemoryError:
    return OutOfMemoryError(
        f"out of memory on {backbone.device} ({str(err).splitlines()[0][:100]}); try --dtype float16, "
        "fewer images per prompt, --set gradient_checkpointing=true where the method has it, or a smaller model"
    )


def _obtain_fit(
    backbone: Backbone,
    req: EditRequest,
    bound: _Bound,
    fits: FitCache | None,
    prog: ProgressOptions,
    only_cached: bool,
    look_up: bool = True,
) -> tuple[Fit | None, bool, float]:
    """(the fit, whether it was reused, seconds spent fitting): the given one when it matches,
    else one kept in ``fits``, else a new one (put in ``fits``)."""

    def key(seed: int) -> str:
        return fit_key(
            bound.expected, seed if fits is not None and fits.per_seed else None, backbone
        )

    fit = None
    if req.fit is not None:
        fit = reusable(req.fit, bound.expected, bound.soft, req.spec.name)
    if fit is not None:
        if fits is not None:  # kept under the seed it was made with
            fits.put(key(fit.meta.get("seed", req.seed)), fit)
        return fit, True, 0.0
    if fits is not None and look_up:
        fit = fits.get(key(req.seed))
        if fit is not None:
            return fit, True, 0.0
    if only_cached:
        return None, False, 0.0
    t0 = time.perf_counter()
    fit = req.spec.fit(
        backbone,
        bound.inputs,
        req.config,
        torch.Generator().manual_seed(req.seed),
        prog.sub("fit"),
    )
    fit_s = time.perf_counter() - t0
    fit.meta.update(bound.expected)
    fit.meta.update(
        seed=req.seed,
        revision=backbone.revision,
        versions=library_versions(),
        fit_s=round(fit_s, 3),
        device=str(backbone.device),
        dtype=str(backbone.dtype),
    )
    if fits is not None:
        fits.put(key(req.seed), fit)
    return fit, False, fit_s


def cached_fit(backbone: Backbone, req: EditRequest, fits: FitCache) -> Fit | None:
    """The fit ``fits`` keeps for ``req``, if any (nothing is fitted or drawn)."""
    bound = _bind(backbone, req)
    return fits.get(fit_key(bound.expected, req.seed if fits.per_seed else None, backbone))


def fit_only(
    backbone: Backbone,
    req: EditRequest,
    *,
    fits: FitCache | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> Fit:
    """Make the fit of ``req`` without sampling (always: a kept one is not looked up) and keep it
    in ``fits``; saved when the request says where."""
    bound = _bind(backbone, req)
    prog = ProgressOptions(enabled=progress, callback=callback)
    try:
        fit, _, _ = _obtain_fit(
            backbone, replace(req, fit=None), bound, fits, prog, False, look_up=False
        )
    except (_TorchOOM, MemoryError) as e:
        raise _oom(e, backbone) from None
    assert fit is not None
    if req.save_artifacts is not None:
        fit.save(req.save_artifacts)
    return fit


def run(
    backbone: Backbone,
    req: EditRequest,
    *,
    fits: FitCache | None = None,
    progress: bool = True,
    callback: Callback | None = None,
    step_end: StepEnd | None = None,
    only_cached: bool = False,
) -> EditResult | None:
    """Run a prepared edit on ``backbone`` (the numbered steps of this module's docstring).

    ``fits``: where fits are looked up and kept. ``only_cached``: return None instead of fitting
    when no fit can be reused (the demo's sliders never start a fit). ``step_end``: called after
    each sampling step (``progress.StepEnd``)."""
    # 1. normalise the inputs; what a fit of them depends on
    bound = _bind(backbone, req)
    spec, cfg, inputs = req.spec, req.config, bound.inputs
    prog = ProgressOptions(enabled=progress, callback=callback)
    timings: dict[str, float] = {}
    clip_path = ranking_clip(backbone, cfg)  # before the fit: a bad rank_clip must not cost one
    try:
        # 2. fit, or reuse a fit
        fit, reused, fit_s = _obtain_fit(backbone, req, bound, fits, prog, only_cached)
        if fit is None:
            return None
        timings["fit_s"] = fit_s
        if req.save_artifacts is not None:
            fit.save(req.save_artifacts)
        # 3. draw, 4. select
        t0 = time.perf_counter()
        sampling = ProgressOptions(enabled=progress, callback=callback, step_end=step_end)
        try:
            generated, region = draw(spec, backbone, fit, inputs, cfg, req.seed, sampling)
        except (RuntimeError, ValueError) as e:
            if not reused or isinstance(e, _TorchOOM):
                raise
            # a saved fit whose tensors do not fit this model (shapes, keys): the method's tensor
            # ops fail; say so instead of a traceback
            raise ArtifactMismatchError(
                f"the saved fit does not fit this model or method ({str(e).splitlines()[0][:120]}); "
                "refit without --artifacts"
            ) from None
        timings["sample_s"] = time.perf_counter() - t0
        chosen = select(generated, inputs.pixels[:1], inputs.prompt, cfg, clip_path, region)
        timings["sample_s"] += chosen.timings["restore_s"]  # the restore counts as sampling
        if "rank_s" in chosen.timings:
            timings["rank_s"] = chosen.timings["rank_s"]
    except (_TorchOOM, MemoryError) as e:
        raise _oom(e, backbone) from None
    # 5. the recipe
    recipe = {
        "method": spec.name,
        "prompt": req.prompt,
        "source_prompt": req.source_prompt,
        "seed": req.seed,
        "fit_seed": fit.meta.get("seed", req.seed),
        "fit_reused": reused,
        "config": to_dict(cfg),
        "model": backbone.model_id,
        "revision": backbone.revision,
        "resolution": backbone.resolution,
        "device": str(backbone.device),
        "dtype": str(backbone.dtype).removeprefix("torch."),
        "resize": req.resize,
        "input_hashes": inputs.hashes,
        "versions": library_versions(),
    }
    if bound.facts:
        recipe["edit_facts"] = bound.facts
    if chosen.ranking is not None:
        recipe["ranking"] = chosen.ranking.to_dict()
    if not torch.isfinite(chosen.pixels).all():
        raise NonFiniteOutputError(
            f"{spec.name} produced NaN or infinite pixels on {backbone.device} ({backbone.dtype}); "
            "try --dtype float32, fewer sampling steps or a lower guidance_scale"
        )
    out = tensor_to_pil(chosen.pixels)
    return EditResult(
        out,
        fit,
        cfg,
        req.seed,
        timings,
        recipe,
        inputs.images,
        chosen.candidates,
        chosen.ranking,
        fit_reused=reused,
    )


def run_sweep(
    backbone: Backbone,
    req: EditRequest,
    sweep: dict[str, list[Any]],
    *,
    fits: FitCache | None = None,
    **kwargs: Any,
) -> list[EditResult]:
    """:func:`run` for every combination of ``sweep`` values, at the request's one seed. When only
    sample-stage fields are swept the first combination fits (or takes the given fit) and the
    others re-sample that fit, which is saved once; when a fit-stage field is swept every
    combination fits on its own. Each result's recipe records its ``sweep`` values."""
    requests, refit = sweep_requests(req, sweep)
    kept = None if refit else (fits if fits is not None else FitCache(1))
    results = []
    for k, (combo, r) in enumerate(requests):
        if k and not refit:  # the first combination checked the given fit; the cache has it now
            r = replace(r, save_artifacts=None, fit=None)
        result = run(backbone, r, fits=kept, **kwargs)
        assert result is not None
        result.recipe["sweep"] = combo
        results.append(result)
    return results


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package, for a warning raised by the
    function calling this one: it points at the user's line, whichever front end they called."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1  # the warning function itself is level 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
