"""Method configs: dataclasses whose fields carry help, range and stage.

A method's config is a plain dataclass built with :func:`param`. The metadata on each field drives
everything a user touches: CLI ``--set key=value`` parsing and ``show-config``, YAML presets
(which hold only the values that differ from the defaults), and later the demo's widgets.

Stages: ``"fit"`` fields change what is learned from the image (steps, learning rates, LoRA rank);
``"sample"`` fields change only generation (guidance, eta, steps of the sampler). Saved artifacts
are reused whenever only sample-stage fields differ.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

Stage = typing.Literal["fit", "sample"]
_NON_FINITE = ("nan", "inf", "infinity")


def param(
    default: Any,
    *,
    help: str,
    stage: Stage,
    min: float | None = None,
    max: float | None = None,
    choices: typing.Sequence[Any] | None = None,
    check: typing.Callable[[Any], str | None] | None = None,
) -> Any:
    """A config field with the metadata the CLI, presets and demo are generated from. ``check``:
    for values the type, range and choices cannot describe; it returns what is wrong with a value
    and how to fix it (one line), or None when the value is fine."""
    if stage not in ("fit", "sample"):
        raise ValueError(f"stage must be 'fit' or 'sample', got {stage!r}")
    meta = {
        "help": help,
        "stage": stage,
        "min": min,
        "max": max,
        "choices": choices,
        "check": check,
    }
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: typing.cast(Any, default).copy(), metadata=meta
        )
    return dataclasses.field(default=default, metadata=meta)


def checked_by(parse: typing.Callable[[Any], Any]) -> typing.Callable[[Any], str | None]:
    """A ``param`` check from a parser that raises ValueError naming the fix: the error's text for
    a value it refuses, else None."""

    def check(value: Any) -> str | None:
        try:
            parse(value)
        except ValueError as e:
            return str(e)
        return None

    return check


#: The config mixins whose fields methods share (best of N, the restore, fine-tuning, per-step
#: tuning, DECOR's option), in the order :func:`default` searches them.
SHARED_CONFIGS: list[type] = []


def shared_config(cls: type) -> type:
    """Class decorator: ``cls`` is a config mixin whose fields a method may give its own default
    with :func:`default`."""
    SHARED_CONFIGS.append(cls)
    return cls


def default(name: str, value: Any, help: str | None = None) -> Any:
    """The shared field ``name`` (of the :func:`shared_config` mixin that declares it) with the
    method's own default ``value``, and its own ``help`` if given: the range and the stage stay the
    mixin's. The one way a method config changes a shared field, e.g.
    ``candidates: int = default("candidates", 12)``."""
    owners = [base for base in SHARED_CONFIGS if any(f.name == name for f in fields(base))]
    if not owners:
        known = sorted(f.name for base in SHARED_CONFIGS for f in fields(base))
        raise TypeError(f"{name!r} is not a shared config field ({', '.join(known)})")
    # a mixin that extends another (BestOfNConfig extends RestoreConfig) owns its base's fields too
    roots = [b for b in owners if not any(o is not b and issubclass(b, o) for o in owners)]
    if len(roots) > 1:
        raise TypeError(
            f"{name!r} is declared by {', '.join(b.__name__ for b in roots)}: rename one"
        )
    return redeclare(roots[0], name, value, help)


def redeclare(base: type, name: str, value: Any, help: str | None = None) -> Any:
    """Field ``name`` of the config class ``base`` with another default (see :func:`default`)."""
    shared = {f.name: f for f in fields(base)}
    if name not in shared:
        raise TypeError(f"{name!r} is not a field of {base.__name__} ({', '.join(shared)})")
    meta = dict(shared[name].metadata)
    if help is not None:
        meta["help"] = help
    if isinstance(value, list | dict):
        return dataclasses.field(
            default_factory=lambda: typing.cast(Any, value).copy(), metadata=meta
        )
    return dataclasses.field(default=value, metadata=meta)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any
    default: Any
    help: str
    stage: Stage
    min: float | None
    max: float | None
    choices: tuple | None
    check: typing.Callable[[Any], str | None] | None = None


def _introduced_by(config_cls: type) -> dict[str, tuple[int, int, int]]:
    """For each field, where it is shown: ``(d, 0, 0)`` with ``d`` the position in ``config_cls``'s
    MRO of the class that first declared it (0 = the config class itself, higher = a shared base
    such as ``selection.BestOfNConfig``). The fields of a base marked ``shown_as_own`` (fine-tuning,
    the sampler) count as the config class's own where it writes one of them out: the base's
    fields stand together, ``(0, i, j)``, at the place ``i`` of the first one written."""
    depth: dict[str, tuple[int, int, int]] = {}
    owner: dict[str, type] = {}
    for i, klass in enumerate(config_cls.__mro__):
        if dataclasses.is_dataclass(klass):
            for f in fields(klass):
                depth[f.name], owner[f.name] = (i, 0, 0), klass
    own = list(config_cls.__dict__.get("__annotations__", {}))
    for i, name in enumerate(own):
        if depth.get(name, (0, 0, 0))[0] == 0:
            depth[name] = (0, i, 0)
    for base in {owner[n] for n in own if owner[n].__dict__.get("shown_as_own", False)}:
        block = [f.name for f in fields(base)]
        first = min(own.index(n) for n in block if n in own)
        for j, name in enumerate(block):
            depth[name] = (0, first, j)
    return depth


def fit_fields(config_cls: type) -> set[str]:
    """The shared fields that ``config_cls``'s fit depends on although their base declares them
    for sampling (a ``fit_fields`` tuple on the class or one of its bases)."""
    return {n for k in config_cls.__mro__ for n in k.__dict__.get("fit_fields", ())}


def field_infos(config_cls: type) -> list[FieldInfo]:
    """The fields of a config class with their metadata: the method's own fields first, in their
    order, then those it inherits from shared bases (sampling and selection), base by base. A field
    named in the class's ``fit_fields`` is a fit-stage field whatever its base declares."""
    hints = typing.get_type_hints(config_cls)
    depth = _introduced_by(config_cls)
    moved = fit_fields(config_cls)
    out = []
    for f in sorted(fields(config_cls), key=lambda f: depth[f.name]):
        if "stage" not in f.metadata:
            raise TypeError(f"{config_cls.__name__}.{f.name} must be declared with param(...)")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        choices = f.metadata.get("choices")
        out.append(
            FieldInfo(
                name=f.name,
                type=hints[f.name],
                default=default,
                help=f.metadata["help"],
                stage="fit" if f.name in moved else f.metadata["stage"],
                min=f.metadata.get("min"),
                max=f.metadata.get("max"),
                choices=tuple(choices) if choices is not None else None,
                check=f.metadata.get("check"),
            )
        )
    return out


def base_type(tp: Any) -> Any:
    """The scalar type of a hint: ``float | None`` -> float, ``list[str]`` -> list."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return base_type(args[0]) if len(args) == 1 else str
    if origin is not None:
        return origin
    return tp


def _allows_none(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def parse_value(info: FieldInfo, raw: Any, *, where: str = "") -> Any:
    """Convert ``raw`` (a string from the CLI, or a YAML value) to the field's type."""
    tp = base_type(info.type)
    label = f"{info.name}={raw!r}{where}"
    if isinstance(raw, str) and raw.strip().lower() in ("none", "null") and _allows_none(info.type):
        return None
    try:
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():  # nan and inf included
                raise ValueError
            if isinstance(raw, str) and raw.strip().lower().lstrip("+-") in _NON_FINITE:
                raise ValueError
            if isinstance(raw, str) and "e" in raw.lower():  # 1e3 is a whole number, 2.5e0 is not
                as_float = float(raw)
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            return int(raw)
        if tp is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if not math.isfinite(value):
                raise ConfigError(
                    f"{label}: must be a finite number (not nan or inf); fix the value (see "
                    "`imagic-kit show-config`)"
                )
            return value
        if tp is list:
            if isinstance(raw, list):
                return list(raw)
            return [s.strip() for s in str(raw).split(",") if s.strip()]
        if tp is str:
            return str(raw)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"{label}: expected {getattr(tp, '__name__', tp)}; fix the value (see `imagic-kit show-config`)"
        ) from None
    return raw


def check_seed(seed: Any, what: str = "seed") -> int:
    """``seed`` as a seed: a whole number in [0, 2**63-1] (what torch's generators take)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"{what} {seed!r}: give a whole number in [0, 2**63-1]")
    return seed


def check_value(info: FieldInfo, value: Any, *, where: str = "") -> None:
    """Raise :class:`ConfigError` when ``value`` is not allowed for the field: None where a value is
    required, outside ``choices``, out of [min, max], or not finite (NaN compares false with every
    bound, so it is refused on its own)."""
    if value is None:
        if not _allows_none(info.type):
            raise ConfigError(f"{info.name}=None{where}: a value is required")
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{info.name}={value!r}{where}: must be a finite number (not nan or inf); fix the value"
        )
    tp = base_type(info.type)
    if tp is list:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(
                f"{info.name}={value!r}{where}: expected a comma list of names, e.g. conv1,conv2"
            )
        if info.min is not None and len(value) < info.min:
            raise ConfigError(f"{info.name}{where}: give at least {info.min:g} name(s)")
        return
    if tp in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(
            f"{info.name}={value!r}{where}: expected {tp.__name__}; fix the value (see "
            "`imagic-kit show-config`)"
        )
    if info.choices is not None and value not in info.choices:
        raise ConfigError(
            f"{info.name}={value!r}{where} is not allowed; choose one of: {', '.join(map(str, info.choices))}"
        )
    if info.min is not None and value < info.min or info.max is not None and value > info.max:
        rng = f"[{info.min if info.min is not None else '-inf'}, {info.max if info.max is not None else 'inf'}]"
        raise ConfigError(
            f"{info.name}={value!r}{where} is out of range {rng}; pick a value inside it"
        )
    problem = info.check(value) if info.check is not None else None
    if problem:
        raise ConfigError(f"{info.name}={value!r}{where}: {problem}")


def validate(config: Any) -> None:
    for info in field_infos(type(config)):
        check_value(info, getattr(config, info.name))


def apply_overrides(
    config: Any, overrides: dict[str, Any], *, where: str = "", method: str | None = None
) -> Any:
    """Return a copy of ``config`` with ``overrides`` applied; unknown keys are rejected, with the
    nearest valid key suggested (``method`` names whose fields they are)."""
    infos = {i.name: i for i in field_infos(type(config))}
    changes = {}
    for key, raw in overrides.items():
        info = infos.get(key)
        if info is None:
            raise ConfigError(unknown_key_message(key, list(infos), where, method))
        value = parse_value(info, raw, where=where)
        check_value(info, value, where=where)
        changes[key] = value
    return dataclasses.replace(config, **changes)


def unknown_key_message(
    key: str, valid: list[str], where: str = "", method: str | None = None
) -> str:
    """``unknown config key 'strenght' of 'sdedit': did you mean 'strength'? (valid keys: ...)``"""
    import difflib

    of = f" of {method!r}" if method else ""
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f": did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{where}{of}{hint} (valid keys: {', '.join(valid)})"


def parse_set_args(items: typing.Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (the CLI's ``--set``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set guidance_scale=5")
        if key.strip() in out:
            raise ConfigError(f"--set {key.strip()} is given twice; keep one")
        out[key.strip()] = value.strip()
    return out


def parse_sweep(items: typing.Iterable[str]) -> dict[str, list[str]]:
    """``["eta=0.5,1", "seed=1"]`` -> ``{"eta": ["0.5", "1"], "seed": ["1"]}`` (``--sweep``)."""
    sweep: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ConfigError(
                f"--sweep {item!r}: expected key=v1,v2,..., e.g. --sweep guidance_scale=3,5,7"
            )
        if key.strip() in sweep:
            raise ConfigError(
                f"--sweep {key.strip()} is given twice; give all its values in one: "
                f"--sweep {key.strip()}=v1,v2,..."
            )
        sweep[key.strip()] = vals
    return sweep


def to_dict(config: Any, stage: Stage | None = None) -> dict[str, Any]:
    """The config as a JSON-able dict, optionally only one stage's fields."""
    return {
        i.name: getattr(config, i.name)
        for i in field_infos(type(config))
        if stage is None or i.stage == stage
    }


# --- presets ------------------------------------------------------------------------------------


def configs_dir() -> Path:
    """The installed ``configs/`` folder (``imagic_kit.configs`` package), or, when the package runs
    from a source checkout that was never installed (``PYTHONPATH=.``), the checkout's ``configs/``."""
    try:
        return Path(str(resources.files("imagic_kit.configs")))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / "configs"
        if checkout.is_dir():
            return checkout
        raise ConfigError(
            "the presets folder (imagic_kit.configs) is missing; reinstall imagic-kit "
            "(pip install -e . from the checkout)"
        ) from None


def preset_names(method: str) -> list[str]:
    d = configs_dir() / "methods" / method
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_preset(config: Any, method: str, name: str) -> Any:
    """Apply preset ``configs/methods/<method>/<name>.yaml`` (or a path to a YAML file)."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = configs_dir() / "methods" / method / f"{name}.yaml"
        if not path.is_file():
            names = preset_names(method)
            raise ConfigError(
                f"unknown preset {name!r} for method {method!r}; available: {', '.join(names) or 'none'}"
            )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"preset {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {path} is not valid YAML: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of config keys to values")
    return apply_overrides(config, data, where=f" (in preset {path.name})", method=method)
