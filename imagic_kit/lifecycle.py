"""One edit's lifecycle, the same under every front end: check, fit or reuse, draw, select, recipe.

The CLI, ``edit()``, the pipelines (``pipelines.py``), the demo, batch runs and the benchmark all
go through the two functions here::

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
:func:`fit_key` is exactly that, the key a saved fit is checked with. :class:`FitCache` is the one
place fits are kept in memory.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .artifacts import Fit, check_save_target
from .backbone import Backbone
from .config import check_seed, field_infos, to_dict
from .errors import (
    ArtifactMismatchError,
    ConfigError,
    InputImageError,
    NonFiniteOutputError,
    OutOfMemoryError,
)
from .imaging import (
    RESIZE_MODES,
    fit_to_square,
    image_hash,
    load_image,
    pil_to_tensor,
    save_png,
    tensor_to_pil,
)
from .progress import Callback, ProgressOptions, StepEnd
from .registry import MethodSpec, get_method, make_config
from .selection import draw, ranking_clip, select

logger = logging.getLogger(__name__)
_TorchOOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class EditInputs:
    """What a method's ``fit`` and ``sample`` receive besides the backbone and config."""

    images: list[Image.Image]  # normalised RGB at the model's resolution
    pixels: torch.Tensor  # [K, 3, H, W] in [-1, 1], on the backbone's device
    prompt: str
    source_prompt: str | None
    hashes: list[str]
    #: Index, among the ``draws`` samples an edit draws in all, of the first one this ``sample``
    #: call makes (``selection.draw`` draws in batches): a deterministic method spreads its
    #: candidates over a setting with them (PTI's ``eta_start``).
    first_candidate: int = 0
    draws: int = 1


@dataclass
class EditResult:
    images: list[Image.Image]
    fit: Fit
    config: Any
    seed: int
    timings: dict[str, float]
    recipe: dict[str, Any]
    inputs: list[Image.Image] = field(default_factory=list)
    # best-of-N (config ``candidates`` > 1): every image drawn, in drawing order (restored, with
    # ``restore_unedited`` > 0; selection.py); ``images`` holds the best of them, ``ranking`` the
    # measures and scores of the images as generated, before the restore (``recipe["ranking"]``:
    # the same, rounded)
    candidates: list[Image.Image] = field(default_factory=list)
    ranking: Any = None
    #: Whether the fit was reused (given, or kept from an earlier edit) instead of made.
    fit_reused: bool = False

    @property
    def image(self) -> Image.Image:
        return self.images[0]

    @property
    def artifacts(self) -> Fit:
        return self.fit

    def save(self, path: str | Path) -> list[Path]:
        """Write the image(s) as PNG with the recipe: ``path`` itself for the first, then ``stem-1.png``..."""
        path = Path(path)
        out = []
        for i, img in enumerate(self.images):
            p = path if i == 0 else path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}")
            out.append(save_png(img, p, {**self.recipe, "index": i}))
        return out


@dataclass
class EditRequest:
    """An edit checked as far as it can be without a model (:func:`prepare`)."""

    spec: MethodSpec
    config: Any
    images: list[Image.Image]  # as read, before they are made square at the model's resolution
    prompt: str
    source_prompt: str | None
    seed: int
    resize: str = "crop"
    #: A saved fit to reuse, already checked against the method and the fit-stage config.
    fit: Fit | None = None
    save_artifacts: Path | None = None


class FitCache:
    """The fits kept in memory, bounded: the least recently used goes first. Thread-safe.

    Keys are :func:`fit_key` strings. ``per_seed=True`` keeps a fit only for edits of the seed it
    was made with (batch runs: an output must not depend on which row ran first)."""

    def __init__(self, size: int = 4, *, per_seed: bool = False):
        if size < 1:
            raise ValueError("a FitCache holds at least one fit")
        self.size, self.per_seed = size, per_seed
        self._items: OrderedDict[str, Fit] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Fit | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: str, fit: Fit) -> None:
        with self._lock:
            self._items[key] = fit
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def library_versions() -> dict[str, str]:
    """The installed versions of the toolkit and the libraries an output depends on (the recipe's)."""
    import importlib.metadata as md

    out = {}
    for key, dist in (
        ("imagic_kit", "imagic-kit"),
        ("torch", "torch"),
        ("diffusers", "diffusers"),
        ("transformers", "transformers"),
        ("peft", "peft"),
        ("accelerate", "accelerate"),
    ):
        try:
            out[key] = md.version(dist)
        except md.PackageNotFoundError:
            if key == "imagic_kit":  # a source checkout on PYTHONPATH, never installed
                out[key] = "0.0.0+unknown"
    return out


# --- checks without a model -------------------------------------------------------------------


def check_request(spec: MethodSpec, images: list[Any], prompt: Any, source_prompt: Any) -> None:
    """The checks that need no model: the prompt, the source prompt, the number of images."""
    if not isinstance(prompt, str):
        raise ConfigError(f"the prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ConfigError(
            "the prompt is empty: say what the edited image should show, e.g. --prompt 'a blue circle'"
        )
    if source_prompt is not None and not isinstance(source_prompt, str):
        raise ConfigError(f"source_prompt must be text, got {type(source_prompt).__name__}")
    if spec.source_prompt == "required" and not (source_prompt or "").strip():
        raise ConfigError(
            f"method {spec.name!r} needs --source-prompt (a caption of the input image)"
        )
    n = len(images)
    if not spec.min_images <= n <= spec.max_images:
        want = (
            str(spec.min_images)
            if spec.min_images == spec.max_images
            else f"{spec.min_images} to {spec.max_images}"
        )
        raise ConfigError(f"method {spec.name!r} takes {want} input image(s), got {n}")


def check_components(spec: MethodSpec, backbone: Backbone) -> None:
    """The model has the components the method needs (an image encoder for FastEdit, ...)."""
    missing = [c for c in spec.requires if getattr(backbone, c, None) is None]
    if missing:
        works = (
            f"use one of the presets {', '.join(spec.models)} (--model)"
            if spec.models
            else "pick a model that has it (see configs/backbones)"
        )
        raise ConfigError(
            f"method {spec.name!r} needs a model with {', '.join(missing)}, and {backbone.model_id!r} has none; "
            + works
        )


def check_inputs(
    spec: MethodSpec, backbone: Backbone, images: list[Any], prompt: Any, source_prompt: Any
) -> None:
    check_request(spec, images, prompt, source_prompt)
    check_components(spec, backbone)


def load_fit(artifacts: str | os.PathLike | Fit) -> Fit:
    """A saved fit (folder) read, or a :class:`Fit` as it is."""
    if isinstance(artifacts, Fit):
        return artifacts
    if not isinstance(artifacts, str | os.PathLike):
        raise ConfigError(
            f"artifacts must be a folder path or a Fit, got {type(artifacts).__name__}"
        )
    return Fit.load(artifacts)


def prepare(
    image: Any,
    prompt: Any,
    *,
    method: str,
    source_prompt: Any = None,
    seed: int | None = None,
    config: Any = None,
    preset: str | None = None,
    artifacts: str | os.PathLike | Fit | None = None,
    save_artifacts: str | os.PathLike | None = None,
    resize: str = "crop",
    fit_settings_from_artifacts: bool = False,
    label: str = "image",
    **overrides: Any,
) -> EditRequest:
    """Check an edit as far as it can be without a model, in the order a user fixes things.

    ``label``: what errors call the image(s) (``--image`` on the command line).
    ``fit_settings_from_artifacts``: the fit-stage fields not named in ``overrides`` come from the
    given fit (the pipelines' ``fit=``), so that only the sample-stage settings need repeating."""
    for name, value in (("artifacts", artifacts), ("save_artifacts", save_artifacts)):
        if value is not None and not isinstance(value, str | os.PathLike | Fit):
            raise ConfigError(f"{name} must be a folder path or a Fit, got {type(value).__name__}")
    if isinstance(save_artifacts, Fit):
        raise ConfigError("save_artifacts must be a folder path")
    if resize not in RESIZE_MODES:  # the message fit_to_square gives, before a model loads
        raise InputImageError(
            f"resize mode {resize!r} is unknown; choose one of: {', '.join(RESIZE_MODES)}"
        )
    spec = get_method(method)
    cfg = make_config(method, config, preset, **overrides)
    sources = list(image) if isinstance(image, list | tuple) else [image]
    check_request(spec, sources, prompt, source_prompt)
    prompt = prompt.strip()
    source_prompt = source_prompt.strip() if source_prompt and source_prompt.strip() else None
    if spec.source_prompt == "unused":
        source_prompt = None
    if seed is None:
        seed = secrets.randbelow(2**31)
    check_seed(seed)
    target = check_save_target(save_artifacts) if save_artifacts is not None else None
    pils = [
        load_image(s, name=f"{label} {i + 1}" if len(sources) > 1 else label)
        for i, s in enumerate(sources)
    ]
    fit = None
    if artifacts is not None:
        fit = load_fit(artifacts)
        if fit_settings_from_artifacts:
            cfg = _fit_settings_of(fit, spec, cfg, _named(spec, config, preset, overrides))
        fit.check_compatible({"method": spec.name, "fit_config": to_dict(cfg, "fit")})
    return EditRequest(spec, cfg, pils, prompt, source_prompt, seed, resize, fit, target)


def _named(spec: MethodSpec, config: Any, preset: str | None, overrides: dict[str, Any]) -> set:
    """The fields a caller set: ``overrides``, and those ``config`` or ``preset`` give another
    value than the default."""
    if config is None and not preset:
        return set(overrides)
    given, default = to_dict(make_config(spec.name, config, preset)), to_dict(spec.config_cls())
    return set(overrides) | {k for k, v in given.items() if v != default[k]}


def _fit_settings_of(fit: Fit, spec: MethodSpec, cfg: Any, named: set) -> Any:
    """``cfg`` with the fit-stage values ``fit`` was made with, except those named in ``named``."""
    saved = fit.meta.get("fit_config")
    if fit.meta.get("method") != spec.name or not isinstance(saved, dict):
        return cfg  # refused by the check that follows, with the difference named
    fit_fields = {i.name for i in field_infos(spec.config_cls) if i.stage == "fit"}
    take = {k: v for k, v in saved.items() if k in fit_fields and k not in named}
    return make_config(spec.name, {**to_dict(cfg), **take})


# --- with a model -----------------------------------------------------------------------------


@dataclass
class _Bound:
    """A request bound to a model: its normalised inputs and what a fit of it depends on."""

    inputs: EditInputs
    expected: dict[str, Any]  # the fit's key, as saved fits record it
    soft: list[str]  # keys of ``expected`` that are facts of the edit (refit when they differ)
    facts: dict[str, Any]


def _bind(backbone: Backbone, req: EditRequest) -> _Bound:
    if not isinstance(backbone, Backbone):
        raise ConfigError(
            f"backbone must be a Backbone from load_backbone(...), got {type(backbone).__name__}; "
            "e.g. edit(load_backbone('tiny-shapes'), ...)"
        )
    spec, cfg = req.spec, req.config
    check_components(spec, backbone)
    pils = [fit_to_square(p, backbone.resolution, req.resize) for p in req.images]
    if backbone.extras.get("world") == "shapes":
        _warn_outside_world(backbone, pils)
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
    facts = spec.edit_facts(backbone, inputs, cfg) if spec.edit_facts is not None else {}
    deps = spec.fit_inputs(cfg)
    expected.update({k: facts[k] if k in facts else getattr(inputs, k) for k in deps})
    return _Bound(inputs, expected, [k for k in deps if k in facts], facts)


def fit_key(
    expected: dict[str, Any], seed: int | None = None, backbone: Backbone | None = None
) -> str:
    """The key a fit is kept under in a :class:`FitCache`: what it depends on (the key a saved fit
    is checked with), the device and dtype of the model it was made on, and its seed for a
    per-seed cache; as JSON."""
    key = dict(expected)
    if backbone is not None:
        key.update(device=str(backbone.device), dtype=str(backbone.dtype))
    if seed is not None:
        key["fit_seed"] = seed
    return json.dumps(key, sort_keys=True, default=str)


def _reusable(fit: Fit, expected: dict[str, Any], soft: list[str], method: str) -> Fit | None:
    """``fit`` when it matches ``expected``; None (refit, with a warning) when only the ``soft``
    keys differ (facts of the edit such as FastEdit's timestep range); otherwise the mismatch
    error."""
    fit.check_compatible({k: v for k, v in expected.items() if k not in soft})
    why = fit.mismatch({k: expected[k] for k in soft})
    if why is not None:
        logger.warning("%s: the saved fit was made for other inputs (%s); refitting", method, why)
        return None
    return fit


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
        fit = _reusable(req.fit, bound.expected, bound.soft, req.spec.name)
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
            generated = draw(spec, backbone, fit, inputs, cfg, req.seed, sampling)
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
        chosen = select(generated, inputs.pixels[:1], inputs.prompt, cfg, clip_path)
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


def check_sweep_keys(spec: MethodSpec, sweep: dict[str, Any]) -> bool:
    """Refuse keys that are not fields of the method; whether any swept field is fit-stage."""
    infos = {i.name: i for i in field_infos(spec.config_cls)}
    unknown = [k for k in sweep if k not in infos]
    if unknown:
        raise ConfigError(
            f"sweep key(s) {', '.join(unknown)} are not fields of {spec.name!r}; valid keys: {', '.join(infos)}"
        )
    return any(infos[k].stage == "fit" for k in sweep)


def sweep_requests(
    req: EditRequest, sweep: dict[str, list[Any]]
) -> tuple[list[tuple[dict[str, Any], EditRequest]], bool]:
    """One request per combination of ``sweep`` values, and whether any swept field is fit-stage
    (then each combination fits on its own, and a given fit is not offered)."""
    import itertools

    spec = req.spec
    refit = check_sweep_keys(spec, sweep)
    out = []
    for values in itertools.product(*sweep.values()):
        combo = dict(zip(sweep, values))
        cfg = make_config(spec.name, req.config, None, **combo)
        out.append((combo, replace(req, config=cfg, fit=None if refit else req.fit)))
    return out, refit


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


def _warn_outside_world(backbone: Backbone, pils: list[Image.Image]) -> None:
    """The embedded model knows only the shapes world: say so when an input is not of it (a
    photo gives 64-pixel mush, not an error)."""
    from .shapes.oracle import looks_like_scene

    if all(looks_like_scene(p) for p in pils):
        return
    warnings.warn(
        f"the input does not look like the shapes world, the only thing the embedded model "
        f"{backbone.model_id!r} knows (one coloured circle, square or triangle on a plain "
        "background): expect a meaningless result; for photos use a real model, e.g. --model sd15 "
        "or sd21 (load_backbone('sd15')), or a diffusers folder",
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package, for a warning raised by the
    function calling this one: it points at the user's line, whichever front end they called."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1  # the warning function itself is level 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
