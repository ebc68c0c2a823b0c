"""The method registry: a method is a config dataclass plus ``fit`` and ``sample``.

``fit(backbone, inputs, config, generator, progress) -> Fit`` learns what the method needs from
the input image(s): embeddings, a LoRA, an inversion. ``sample(backbone, fit, inputs, config,
generator, progress) -> latents`` generates from a fit (or ``sampling.Sampled(latents, region)``
when its sampling also drew the region the edit may change). ``edit()`` is fit-or-load, then
sample.
Registering happens at the bottom of each method module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    config_cls: type
    fit: Callable[..., Any]
    sample: Callable[..., Any]
    #: Backbone components the method needs ("text_encoder", "image_encoder", ...).
    requires: tuple[str, ...] = ("text_encoder",)
    #: Whether a source prompt (a caption of the input) is used.
    source_prompt: Literal["unused", "optional", "required"] = "unused"
    #: Inputs that the fit depends on besides the image(s) and the fit-stage config; saved
    #: artifacts are only reused when these match ("prompt", "source_prompt", or the name of one
    #: of the ``edit_facts``). A function of the
    #: config when that depends on a setting (PTI's ``inversion_prompt``).
    fit_depends_on: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    #: Facts of an edit computed before fitting, from the backbone, inputs and config (FastEdit:
    #: the semantic distance and the timestep range it chooses); they go into the recipe. Those
    #: named in ``fit_depends_on`` are what a fit depends on: a saved fit whose facts differ is
    #: refitted, with a warning, instead of refused. A tuple of such functions: their facts merged
    #: (a method's own and those of the options it has, e.g. DECOR's and the attention control's).
    edit_facts: Callable[..., dict[str, Any]] | tuple[Callable[..., dict[str, Any]], ...] | None = (
        None
    )
    #: Model presets the method works with, named when a model lacks a component it ``requires``.
    models: tuple[str, ...] = ()
    min_images: int = 1
    max_images: int = 1
    paper: str = ""
    #: The sample-stage field that weighs the edit against the input (Imagic's ``eta``): what a
    #: sweep varies first and the demo shows beside the prompt.
    main_field: str | None = None
    #: The method's name as written in prose and class names (``FastEdit``: ``FastEditPipeline``,
    #: the demo's tab); by default the name in title case without dashes.
    title: str = ""
    #: A baseline (SDEdit, DDIM): listed after the editing methods.
    baseline: bool = False

    @property
    def display_name(self) -> str:
        return self.title or "".join(w.capitalize() for w in self.name.replace("_", "-").split("-"))

    def fit_inputs(self, config: Any) -> tuple[str, ...]:
        """The inputs a fit made with ``config`` depends on (see ``fit_depends_on``)."""
        deps = self.fit_depends_on
        return tuple(deps(config)) if callable(deps) else deps

    def facts(self, backbone, inputs, config) -> dict[str, Any]:
        """The edit's facts (see ``edit_facts``), merged; they also check the edit before a fit."""
        fns = self.edit_facts if isinstance(self.edit_facts, tuple) else (self.edit_facts,)
        out: dict[str, Any] = {}
        for fn in fns:
            if fn is not None:
                out.update(fn(backbone, inputs, config))
        return out

    def __post_init__(self) -> None:
        if self.main_field is not None:
            from .config import field_infos

            info = {i.name: i for i in field_infos(self.config_cls)}.get(self.main_field)
            if info is None or info.stage != "sample":
                raise ValueError(
                    f"{self.name}: main_field {self.main_field!r} must be a sample-stage field"
                )


_REGISTRY: dict[str, MethodSpec] = {}
_loaded = False


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    from . import methods

    for mod in pkgutil.iter_modules(methods.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{methods.__name__}.{mod.name}")
    _loaded = True


def available_methods() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


#: The toolkit's own method: the one the demo opens on and lists first.
PRODUCT_METHOD = "imagic"


def methods_in_order() -> list[str]:
    """The methods as a user meets them: the toolkit's own first, then the other editing methods,
    then the baselines (each group by name)."""
    names = available_methods()
    return sorted(names, key=lambda n: (n != PRODUCT_METHOD, get_method(n).baseline, n))


def get_method(name: str) -> MethodSpec:
    _load_builtin()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(
            f"unknown method {name!r}; available methods: {', '.join(sorted(_REGISTRY))} "
            "(see `imagic-kit list`)"
        )
    return spec


def make_config(
    method: str, config: Any = None, preset: str | None = None, **overrides: Any
) -> Any:
    """Build a validated config: defaults, then a preset, then ``config`` (object or dict), then overrides."""
    from . import config as cfgmod

    spec = get_method(method)
    if config is not None and isinstance(config, spec.config_cls):
        cfg = config
    else:
        cfg = spec.config_cls()
    if preset:
        cfg = cfgmod.load_preset(cfg, method, preset)
    if isinstance(config, dict):
        cfg = cfgmod.apply_overrides(cfg, config, method=method)
    elif config is not None and not isinstance(config, spec.config_cls):
        raise ConfigError(
            f"config for method {method!r} must be a {spec.config_cls.__name__} or a dict, "
            f"got {type(config).__name__}"
        )
    if overrides:
        cfg = cfgmod.apply_overrides(cfg, overrides, method=method)
    cfgmod.validate(cfg)
    return cfg
