from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from imagic_kit.config import (
    apply_overrides,
    field_infos,
    load_preset,
    param,
    parse_set_args,
    to_dict,
)
from imagic_kit.errors import (
    ConfigError,
)
from imagic_kit.registry import available_methods, get_method, make_config


@dataclass
class Demo:
    steps: int = param(10, help="steps", stage="fit", min=1, max=100)
    lr: float = param(1e-3, help="lr", stage="fit", min=0.0)
    flag: bool = param(False, help="flag", stage="sample")
    mode: str = param("lora", help="mode", stage="fit", choices=["lora", "full"])
    targets: list = param(["to_q", "to_k"], help="targets", stage="fit")
    cap: float | None = param(None, help="optional", stage="sample")


def test_overrides_parse_strings_to_field_types():
    cfg = apply_overrides(
        Demo(),
        {
            "steps": "20",
            "lr": "5e-4",
            "flag": "true",
            "mode": "full",
            "targets": "to_v,to_out.0",
            "cap": "2.5",
        },
    )
    assert (cfg.steps, cfg.lr, cfg.flag, cfg.mode, cfg.targets, cfg.cap) == (
        20,
        5e-4,
        True,
        "full",
        ["to_v", "to_out.0"],
        2.5,
    )
    assert apply_overrides(cfg, {"cap": "none"}).cap is None


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            {"stepz": "1"},
            r"unknown config key 'stepz'.*valid keys: steps, lr, flag, mode, targets, cap",
        ),
        ({"steps": "0"}, "out of range"),
        ({"steps": "1.5"}, "expected int"),
        ({"flag": "maybe"}, "expected bool"),
        ({"mode": "half"}, "choose one of: lora, full"),
        ({"lr": "fast"}, "expected float"),
    ],
)
def test_bad_overrides_are_rejected_with_the_fix(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Demo(), overrides)


def test_stage_split_and_metadata():
    assert set(to_dict(Demo(), "fit")) == {"steps", "lr", "mode", "targets"}
    assert set(to_dict(Demo(), "sample")) == {"flag", "cap"}
    info = {i.name: i for i in field_infos(Demo)}
    assert info["steps"].min == 1 and info["mode"].choices == ("lora", "full")


def test_a_shared_mixin_block_stands_where_a_method_writes_one_of_its_fields():
    from imagic_kit.config import default
    from imagic_kit.sampling import SamplingConfig
    from imagic_kit.selection import RestoreConfig

    @dataclass
    class Method(SamplingConfig, RestoreConfig):
        fit_fields = ("num_inference_steps",)

        first: int = param(1, help="first", stage="fit")
        guidance_scale: float = default("guidance_scale", 3.0, help="own help")
        last: int = param(2, help="last", stage="sample")

    infos = field_infos(Method)
    assert [i.name for i in infos] == [
        "first",
        "num_inference_steps",  # the sampler's block, at its first written field
        "guidance_scale",
        "ddim_eta",
        "last",
        "restore_unedited",  # an inherited mixin that is not shown as own: after the own fields
    ]
    info = {i.name: i for i in infos}
    assert info["guidance_scale"].default == 3.0 and info["guidance_scale"].help == "own help"
    assert info["guidance_scale"].max == 50.0  # the range stays the mixin's
    assert info["num_inference_steps"].stage == "fit" and info["ddim_eta"].stage == "sample"
    assert set(to_dict(Method(), "fit")) == {"first", "num_inference_steps"}


def test_set_args():
    assert parse_set_args(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["novalue"])


@pytest.mark.parametrize("method", available_methods())
def test_every_method_default_config_and_presets_are_valid(method):
    from imagic_kit.config import preset_names, validate

    spec = get_method(method)
    validate(spec.config_cls())
    for info in field_infos(spec.config_cls):
        assert info.help and info.stage in ("fit", "sample")
    for name in preset_names(method):
        validate(make_config(method, preset=name))


def test_preset_errors(tmp_path):
    with pytest.raises(
        ConfigError,
        match="unknown preset 'nope' for method 'sdedit'; available: light, smoke, strong",
    ):
        make_config("sdedit", preset="nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("strenght: 0.3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'strenght' \(in preset bad.yaml\)"):
        load_preset(get_method("sdedit").config_cls(), "sdedit", str(bad))


def test_make_config_layers_preset_dict_and_overrides():
    cfg = make_config("sdedit", {"guidance_scale": 3}, "strong", num_inference_steps=7)
    assert (cfg.strength, cfg.guidance_scale, cfg.num_inference_steps) == (0.8, 3.0, 7)
    with pytest.raises(ConfigError, match="unknown method 'imagicc'"):
        make_config("imagicc")


def test_presets_are_found_in_an_uninstalled_checkout(monkeypatch):
    """Run from a source tree with PYTHONPATH=. (no install), imagic_kit.configs does not exist: the
    presets come from the checkout's configs/ folder instead of failing with ModuleNotFoundError."""
    from imagic_kit import config as config_mod

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(config_mod.resources, "files", missing)
    d = config_mod.configs_dir()
    assert (d / "methods" / "imagic" / "balanced.yaml").is_file()
    assert "balanced" in config_mod.preset_names("imagic")


@pytest.mark.parametrize("method", available_methods())
def test_presets_hold_only_what_differs_from_the_defaults(method):
    """A preset states only the values it changes: a key restating its default would silently keep
    an old value when the default moves."""
    import yaml

    from imagic_kit.config import configs_dir, preset_names

    defaults = get_method(method).config_cls()
    for name in preset_names(method):
        path = configs_dir() / "methods" / method / f"{name}.yaml"
        data = yaml.safe_load(path.read_text()) or {}
        preset = make_config(method, preset=name)
        same = sorted(k for k in data if getattr(preset, k) == getattr(defaults, k))
        assert not same, f"{path.name} restates defaults: {', '.join(same)}"


def test_imagic_balanced_preset_is_the_default():
    assert make_config("imagic", preset="balanced") == make_config("imagic")


def test_imagic_presets_sample_as_documented():
    """paper samples once (the paper's procedure), fast keeps the best of 4, balanced (the
    defaults) of 12, thorough (the earlier defaults, kept as the reference) of 16 at 50 steps."""
    configs = {
        n: make_config("imagic", preset=n) for n in ("paper", "fast", "balanced", "thorough")
    }
    got = {n: (c.candidates, c.num_inference_steps) for n, c in configs.items()}
    assert got == {"paper": (1, 50), "fast": (4, 35), "balanced": (12, 35), "thorough": (16, 50)}


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", float("nan"), math.inf])
@pytest.mark.parametrize("field", ["guidance_scale", "strength", "restore_unedited"])
def test_non_finite_numbers_are_refused(field, value):
    with pytest.raises(ConfigError, match="finite number|expected"):
        make_config("sdedit", **{field: value})


def test_non_finite_values_are_refused_where_a_field_has_no_upper_bound_or_is_an_integer():
    for field, value in (
        ("lora_alpha", "inf"),
        ("loss_weight_cap", "1e400"),
        ("embedding_steps", "inf"),
        ("embedding_steps", "nan"),
        ("candidates", float("inf")),
    ):
        with pytest.raises(ConfigError):
            make_config("imagic", **{field: value})


def test_values_that_look_right_but_are_not(tmp_path):
    with pytest.raises(ConfigError, match="expected int"):
        make_config("sdedit", num_inference_steps="2.5e0")  # not silently 2
    assert make_config("sdedit", num_inference_steps="1e2").num_inference_steps == 100
    for bad in ([], ",", [1, [2]]):
        with pytest.raises(ConfigError, match="lora_targets"):
            make_config("imagic", lora_targets=bad)
    bad_yaml = tmp_path / "p.yaml"
    bad_yaml.write_bytes(b"\xff\xfe strength: 1")
    with pytest.raises(ConfigError, match="not UTF-8"):
        make_config("sdedit", preset=str(bad_yaml))
    from imagic_kit.config import parse_set_args, parse_sweep

    with pytest.raises(ConfigError, match="given twice"):
        parse_sweep(["guidance_scale=2,3", "guidance_scale=4"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_set_args(["strength=0.2", "strength=0.3"])
    from imagic_kit.threads import configure_threads

    for n in (0, -1, 100_000):
        with pytest.raises(ConfigError, match="threads"):
            configure_threads(n)
