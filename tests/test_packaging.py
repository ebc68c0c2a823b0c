"""A plain `pip install .` must carry every subpackage, the configs and the embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "imagic_kit").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "imagic_kit.configs" in listed


def test_package_data_covers_the_embedded_model_and_the_presets():
    """The package-data globs must match the folders where the embedded model and presets live
    (the tests read them from the source tree, so a renamed folder would pass them unshipped)."""
    import fnmatch

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]
    model_files = [
        p.relative_to(ROOT / "imagic_kit").as_posix()
        for p in (ROOT / "imagic_kit" / "embedded").rglob("*")
        if p.is_file()
    ]
    assert len(model_files) > 10
    missed = [f for f in model_files if not any(fnmatch.fnmatch(f, g) for g in globs["imagic_kit"])]
    assert not missed, f"not shipped by package-data: {missed[:5]}"
    configs = ROOT / data["package-dir"]["imagic_kit.configs"]
    presets = [p.relative_to(configs).as_posix() for p in configs.rglob("*.yaml")]
    assert presets and all(
        any(fnmatch.fnmatch(f, g) for g in globs["imagic_kit.configs"]) for f in presets
    )


def test_the_bench_command_is_registered_as_an_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert scripts["entry-points"]["imagic_kit.commands"]["bench"] == (
        "imagic_kit.bench.command:COMMAND"
    )
