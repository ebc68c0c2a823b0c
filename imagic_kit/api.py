"""``edit()``: the one entry used by the CLI, the scripts and the demo.

1. check the inputs (method, config, prompt, images, components)
2. load and normalise the image(s) to the model's resolution
3. fit, or load a saved fit and check it matches
4. draw the samples the config asks for and decode them (``selection.draw``)
5. select: rank the candidates, restore the unedited pixels, keep the best (``selection.select``)
6. attach the recipe
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .artifacts import Fit, check_save_target
from .backbone import Backbone
from .config import check_seed, to_dict
from .errors import ArtifactMismatchError, ConfigError, NonFiniteOutputError, OutOfMemoryError
from .imaging import fit_to_square, image_hash, load_image, pil_to_tensor, save_png, tensor_to_pil
from .progress import Callback, ProgressOptions
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
    # ``restore_unedited`` > 0; selection.py); ``images`` holds the best of them, ``ranking`` the measures and
    # scores of the images as generated, before the restore (``recipe["ranking"]``: the same, rounded)
    candidates: list[Image.Image] = field(default_factory=list)
    ranking: Any = None

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


def check_inputs(
    spec: MethodSpec, backbone: Backbone, images: list[Any], prompt: Any, source_prompt: Any
) -> None:
    check_request(spec, images, prompt, source_prompt)
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
        **overrides: config fields, e.g. ``guidance_scale=5``.

    Returns: :class:`EditResult` with ``images`` (PIL, at the model's resolution), the fit, the
    config used, the seed, timings (``fit_s``, ``sample_s``) and the recipe written into PNGs.
    """
    # 1. check the inputs
    if not isinstance(backbone, Backbone):
        raise ConfigError(
            f"backbone must be a Backbone from load_backbone(...), got {type(backbone).__name__}; "
            "e.g. edit(load_backbone('tiny-shapes'), ...)"
        )
    for name, value in (("artifacts", artifacts), ("save_artifacts", save_artifacts)):
        if value is not None and not isinstance(value, str | os.PathLike | Fit):
            raise ConfigError(f"{name} must be a folder path or a Fit, got {type(value).__name__}")
    if isinstance(save_artifacts, Fit):
        raise ConfigError("save_artifacts must be a folder path")
    spec = get_method(method)
    cfg = make_config(method, config, preset, **overrides)
    sources = list(image) if isinstance(image, list | tuple) else [image]
    check_inputs(spec, backbone, sources, prompt, source_prompt)
    prompt = prompt.strip()
    source_prompt = source_prompt.strip() if source_prompt and source_prompt.strip() else None
    if spec.source_prompt == "unused":
        source_prompt = None
    if seed is None:
        seed = secrets.randbelow(2**31)
    check_seed(seed)
    if save_artifacts is not None:  # found now, not after the fit
        check_save_target(save_artifacts)

    # 2. load and normalise the image(s)
    pils = [
        fit_to_square(
            load_image(s, name=f"image {i + 1}" if len(sources) > 1 else "image"),
            backbone.resolution,
            resize,
        )
        for i, s in enumerate(sources)
    ]
    if backbone.extras.get("world") == "shapes":
        _warn_outside_world(backbone, pils)
    inputs = EditInputs(
        images=pils,
        pixels=torch.cat([pil_to_tensor(p) for p in pils]).to(backbone.device),
        prompt=prompt,
        source_prompt=source_prompt,
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
    prog = ProgressOptions(enabled=progress, callback=callback)
    timings: dict[str, float] = {}
    clip_path = ranking_clip(backbone, cfg)  # before the fit: a bad rank_clip must not cost one
    try:
        # 3. fit, or load a saved fit
        fit = None
        if artifacts is not None:
            fit = artifacts if isinstance(artifacts, Fit) else Fit.load(artifacts)
            fit = _reusable(fit, expected, [k for k in deps if k in facts], spec.name)
        if fit is not None:
            timings["fit_s"] = 0.0
            reused = True
        else:
            t0 = time.perf_counter()
            fit = spec.fit(
                backbone, inputs, cfg, torch.Generator().manual_seed(seed), prog.sub("fit")
            )
            timings["fit_s"] = time.perf_counter() - t0
            fit.meta.update(expected)
            fit.meta.update(
                seed=seed,
                revision=backbone.revision,
                versions=library_versions(),
                fit_s=round(timings["fit_s"], 3),
                device=str(backbone.device),
                dtype=str(backbone.dtype),
            )
            reused = False
        if save_artifacts is not None:
            fit.save(save_artifacts)
        # 4. draw, 5. select
        t0 = time.perf_counter()
        try:
            generated = draw(spec, backbone, fit, inputs, cfg, seed, prog)
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
    # 6. the recipe
    recipe = {
        "method": spec.name,
        "prompt": prompt,
        "source_prompt": source_prompt,
        "seed": seed,
        "fit_seed": fit.meta.get("seed", seed),
        "fit_reused": reused,
        "config": to_dict(cfg),
        "model": backbone.model_id,
        "revision": backbone.revision,
        "resolution": backbone.resolution,
        "device": str(backbone.device),
        "dtype": str(backbone.dtype).removeprefix("torch."),
        "resize": resize,
        "input_hashes": inputs.hashes,
        "versions": library_versions(),
    }
    if facts:
        recipe["edit_facts"] = facts
    if chosen.ranking is not None:
        recipe["ranking"] = chosen.ranking.to_dict()
    if not torch.isfinite(chosen.pixels).all():
        raise NonFiniteOutputError(
            f"{spec.name} produced NaN or infinite pixels on {backbone.device} ({backbone.dtype}); "
            "try --dtype float32, fewer sampling steps or a lower guidance_scale"
        )
    out = tensor_to_pil(chosen.pixels)
    return EditResult(out, fit, cfg, seed, timings, recipe, pils, chosen.candidates, chosen.ranking)


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
        stacklevel=3,
    )


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
    fields are swept (e.g. Imagic's ``eta``). Each result's recipe records its ``sweep`` values.

    Example: ``edit_sweep(bb, "in.png", "a blue circle", method="imagic", sweep={"eta": [0.5, 0.7, 0.9]})``.
    """
    import itertools

    from .config import field_infos

    infos = {i.name: i for i in field_infos(get_method(method).config_cls)}
    unknown = [k for k in sweep if k not in infos]
    if unknown:
        raise ConfigError(
            f"sweep key(s) {', '.join(unknown)} are not fields of {method!r}; valid keys: {', '.join(infos)}"
        )
    refit = any(infos[k].stage == "fit" for k in sweep)
    results: list[EditResult] = []
    fit = kwargs.pop("artifacts", None)
    for values in itertools.product(*sweep.values()):
        combo = dict(zip(sweep, values))
        r = edit(
            backbone,
            image,
            prompt,
            method=method,
            artifacts=None if refit else fit,
            **kwargs,
            **combo,
        )
        if not refit:
            fit = r.fit
            kwargs.pop("save_artifacts", None)  # saved once, with the first result
        r.recipe["sweep"] = combo
        results.append(r)
    return results
