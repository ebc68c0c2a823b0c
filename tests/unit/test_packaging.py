"""A plain `pip install .` must carry every subpackage, the configs and the embedded model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


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


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_help_and_recipe_do_not_import_torch(tmp_path):
    mods = _modules_after(
        "import imagic_kit.cli as c\nc.build_parser()\nfrom imagic_kit.imaging import read_recipe"
    )
    assert "imagic_kit.cli" in mods and "torch" not in mods and "diffusers" not in mods


def test_help_prints_without_torch():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imagic_kit", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "edit" in out.stdout
    assert "| torch\n" not in out.stderr and " torch\n" not in out.stderr


def test_package_names_still_load_on_use():
    import imagic_kit

    assert callable(imagic_kit.edit) and callable(imagic_kit.load_backbone)
    assert "edit" in dir(imagic_kit)
    with pytest.raises(AttributeError, match="no_such_name"):
        imagic_kit.no_such_name  # noqa: B018
