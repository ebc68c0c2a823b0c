"""The layers point one way: the library never imports the benchmark, which builds on it."""

from __future__ import annotations

import ast
from pathlib import Path

import imagic_kit

PACKAGE = Path(imagic_kit.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])  # e.g. ["imagic_kit", "methods"]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def test_the_resolver_sees_relative_absolute_and_nested_imports(monkeypatch):
    fake = PACKAGE / "methods" / "_probe.py"  # never written: parsed from text below
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self: (
            "import torch\nfrom ..selection import default\nfrom . import _common\n"
            "def f():\n    from ..bench.runner import run_benchmark\n"
        ),
    )
    got = _imported_modules(fake)
    assert {"torch", "imagic_kit.selection", "imagic_kit.methods._common"} <= got
    assert "imagic_kit.bench.runner" in got


def test_no_module_outside_bench_imports_the_benchmark():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "bench" in path.relative_to(PACKAGE).parts[:1]:
            continue
        bad = sorted(
            m
            for m in _imported_modules(path)
            if m == "imagic_kit.bench" or m.startswith("imagic_kit.bench.")
        )
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders, f"modules outside bench/ import the benchmark: {offenders}"
