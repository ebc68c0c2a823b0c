"""An edit request, checked without a model (:func:`prepare`), and what an edit gives back: the
first step of the lifecycle (``lifecycle.py``), which the command line runs before any model loads.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .artifacts import Fit, check_save_target
from .backbone import Backbone
from .config import check_seed, field_infos, to_dict
from .errors import ConfigError, InputImageError
from .fit_cache import load_fit
from .imaging import RESIZE_MODES, load_image, save_png
from .registry import MethodSpec, get_method, make_config


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


def check_backbone(spec: MethodSpec, backbone: Any) -> None:
    """``backbone`` is a :class:`Backbone` with the components the method needs."""
    if not isinstance(backbone, Backbone):
        raise ConfigError(
            f"backbone must be a Backbone from load_backbone(...), got {type(backbone).__name__}; "
            "e.g. edit(load_backbone('tiny-shapes'), ...)"
        )
    check_components(spec, backbone)


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
