"""Edit suites: source scenes, captions, targets and the kind of each edit, generated from a seed.

A suite is a JSON file (and may be written by hand)::

    {"name": "quick", "seed": 0, "edits": [
        {"id": "colour-00", "kind": "colour",
         "scene": {"shape": "circle", "colour": "red", "background": "gray", "x0": 12, "y0": 20,
                   "side": 26, "texture_seed": 123},          # or "image": "path/to/input.png"
         "source_prompt": "a red circle on a gray background",
         "prompt": "a blue circle on a gray background",
         "target": {"shape": "circle", "colour": "blue", "background": "gray"},
         "changes": ["colour"]}, ...]}

Kinds: ``colour``, ``shape``, ``background`` and ``two`` (two attributes at once). The quick suite
has 3 edits per kind (12), the full suite 12 per kind (48), listed round-robin over the kinds
(colour-00, shape-00, background-00, two-00, colour-01, ...). Targets always name the background so
the prompt says what to keep as well as what to change.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..imaging import load_image
from ..paths import safe_name
from ..shapes import BACKGROUNDS, COLOURS, SHAPES, Scene, caption, random_scene, render

KINDS = ("colour", "shape", "background", "two")
ATTRS = {"shape": SHAPES, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS)}
SIZES = {"quick": 3, "full": 12}


def _pick_other(rng: np.random.Generator, attr: str, current: str) -> str:
    options = [v for v in ATTRS[attr] if v != current]
    return str(options[int(rng.integers(len(options)))])


def make_suite(name: str = "quick", seed: int = 0, per_kind: int | None = None) -> dict[str, Any]:
    """Generate a suite: ``per_kind`` edits of each kind (3 for "quick", 12 for "full")."""
    per_kind = per_kind or SIZES.get(name)
    if per_kind is None:
        raise ConfigError(f"unknown suite size {name!r}; use quick, full, or pass per_kind")
    rng = np.random.default_rng(seed)
    edits = []
    for kind in KINDS:
        for i in range(per_kind):
            scene = random_scene(rng)
            if kind == "two":
                changes = sorted(rng.choice(list(ATTRS), size=2, replace=False).tolist())
            else:
                changes = [kind]
            target = {"shape": scene.shape, "colour": scene.colour, "background": scene.background}
            for attr in changes:
                target[attr] = _pick_other(rng, attr, target[attr])
            edits.append(
                {
                    "id": f"{kind}-{i:02d}",
                    "kind": kind,
                    "scene": asdict(scene),
                    "source_prompt": scene.caption(),
                    "prompt": caption(target["shape"], target["colour"], target["background"]),
                    "target": target,
                    "changes": changes,
                }
            )
    # Round-robin over the kinds (colour-00, shape-00, background-00, two-00, colour-01, ...): the
    # edits are drawn kind by kind above (their content depends on that order), but a --limit or an
    # interrupted run then covers every kind instead of the colour edits alone.
    edits = [edits[k * per_kind + i] for i in range(per_kind) for k in range(len(KINDS))]
    return {"name": name, "seed": seed, "version": 1, "edits": edits}


def load_suite(spec: str | Path, seed: int = 0) -> dict[str, Any]:
    """``"quick"`` / ``"full"`` (generated from ``seed``) or a path to a suite JSON file.

    A file is checked whole before anything runs, and every problem is a one-line error: an edit's
    id becomes a file name, so it must be a safe name (``paths.SAFE_NAME``) and unique; targets
    and changes must name the world's attributes; a scene must render; an image must load through
    the toolkit's image loader (relative paths are read against the suite file's folder)."""
    if str(spec) in SIZES:
        return make_suite(str(spec), seed)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"suite {spec!r} is neither 'quick', 'full' nor a JSON file; check the path"
        )
    try:
        suite = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"suite file '{path}' is not valid JSON ({str(e).splitlines()[0]})"
        ) from None
    edits = suite.get("edits") if isinstance(suite, dict) else None
    if not isinstance(edits, list) or not edits:
        raise ConfigError(
            f"suite file '{path}' needs a non-empty list \"edits\" (see `make_suite`)"
        )
    seen: set[str] = set()
    for k, e in enumerate(edits):
        where = f"suite '{path}' edit {k}"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: each edit must be an object")
        missing = [f for f in ("id", "prompt", "target", "changes") if f not in e]
        if missing or ("scene" not in e and "image" not in e):
            raise ConfigError(f"{where}: missing {', '.join(missing) or 'scene or image'}")
        e["id"] = safe_name(e["id"], f"{where}: id")
        if e["id"] in seen:
            raise ConfigError(f"{where}: id {e['id']!r} is used twice; give every edit its own id")
        seen.add(e["id"])
        where = f"suite '{path}' edit {e['id']!r}"
        if not isinstance(e["prompt"], str) or not e["prompt"].strip():
            raise ConfigError(f"{where}: the prompt is empty")
        target, changes = e["target"], e["changes"]
        if not isinstance(target, dict) or set(target) != set(ATTRS):
            raise ConfigError(f"{where}: target must give {', '.join(ATTRS)}")
        for attr, value in target.items():
            if value not in ATTRS[attr]:
                raise ConfigError(
                    f"{where}: target {attr} {value!r} is not one of {', '.join(ATTRS[attr])}"
                )
        if not isinstance(changes, list) or not all(c in ATTRS for c in changes):
            raise ConfigError(f"{where}: changes must list attributes among {', '.join(ATTRS)}")
        if "scene" in e:
            try:
                render(Scene(**e["scene"]))
            except (TypeError, ValueError, KeyError) as err:
                raise ConfigError(f"{where}: the scene cannot be drawn ({err})") from None
        else:
            image = Path(str(e["image"]))
            if not image.is_absolute():
                image = (path.parent / image).resolve()
            e["image"] = str(image)
            load_image(image, name=f"{where}: image")
    return suite


def source_image(edit: dict[str, Any]) -> Image.Image:
    """The edit's input: its scene drawn, or its image read through the toolkit's image loader."""
    if "scene" in edit:
        return render(Scene(**edit["scene"]))[0]
    return load_image(edit["image"], name=f"edit {edit['id']!r}: image")


def save_suite(suite: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite, indent=1) + "\n")
    return path
