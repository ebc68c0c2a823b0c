"""The demo's widgets, made from a method's config fields: a range gives a slider, ``choices`` a
dropdown, a flag a checkbox, the help a tooltip; fit-stage fields first, the method's
``main_field`` beside the prompt, the other sample-stage fields under "Advanced"."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..config import FieldInfo, base_type, field_infos, load_preset, to_dict
from ..registry import MethodSpec


def widget_for(info: FieldInfo, value: Any = None, prefix: str = ""):
    """The Gradio input for a config field: slider for a bounded number, dropdown for choices,
    checkbox for a flag, number or text otherwise; the help is its tooltip."""
    tp = base_type(info.type)
    common = dict(label=info.name, info=info.help, elem_id=f"{prefix}field-{info.name}")
    value = info.default if value is None else value
    if info.choices is not None:
        return gr.Dropdown(choices=list(info.choices), value=value, **common)
    if tp is bool:
        return gr.Checkbox(value=bool(value), **common)
    small = (
        tp is float
        and value not in (None, 0)
        and abs(value) < 100 * _step(info.min or 0, info.max or 1)
    )
    if tp in (int, float) and info.min is not None and info.max is not None and not small:
        step = 1 if tp is int else _step(info.min, info.max)
        return gr.Slider(minimum=info.min, maximum=info.max, step=step, value=value, **common)
    if tp in (int, float):
        return gr.Number(value=value, precision=0 if tp is int else None, **common)
    if tp is list:
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        return gr.Textbox(value=text, **common)
    return gr.Textbox(value="" if value is None else str(value), **common)


def _step(lo: float, hi: float) -> float:
    span = hi - lo
    return 0.01 if span <= 5 else 0.1 if span <= 100 else 1.0


def ordered_fields(spec: MethodSpec) -> tuple[list[FieldInfo], FieldInfo | None, list[FieldInfo]]:
    """(fit-stage fields, the main sample field, the other sample-stage fields)."""
    infos = field_infos(spec.config_cls)
    fit = [i for i in infos if i.stage == "fit"]
    main = next((i for i in infos if i.name == spec.main_field), None)
    rest = [i for i in infos if i.stage == "sample" and i is not main]
    return fit, main, rest


def sweep_fields(spec: MethodSpec) -> list[str]:
    """The sample-stage fields a sweep can vary, the method's main field first."""
    _, main, rest = ordered_fields(spec)
    return ([main.name] if main else []) + [i.name for i in rest]


def infos_in_page_order(spec: MethodSpec) -> list[FieldInfo]:
    fit, main, rest = ordered_fields(spec)
    return fit + ([main] if main else []) + rest


def preset_values(spec: MethodSpec, preset: str | None) -> list[Any]:
    """The page's field values for a preset (the defaults for none)."""
    cfg = spec.config_cls()
    if preset and preset != "(defaults)":
        cfg = load_preset(cfg, spec.name, preset)
    values = to_dict(cfg)
    out = []
    for info in infos_in_page_order(spec):
        v = values[info.name]
        out.append(",".join(map(str, v)) if isinstance(v, list) else v)
    return out


def sweep_default(main: FieldInfo | None) -> str:
    """Four values around the main field's default, a twentieth of its range apart."""
    if (
        main is None
        or main.min is None
        or main.max is None
        or not isinstance(main.default, float | int)
    ):
        return ""
    step = (float(main.max) - float(main.min)) / 20
    values = [main.default + k * step for k in (-2, -1, 0, 1)]
    shown = [f"{min(max(v, main.min), main.max):.3g}" for v in values]
    return ",".join(dict.fromkeys(shown))  # a default at a bound clamps two values into one
