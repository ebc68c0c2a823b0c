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
(colour-00, shape-00, background-00, two-00, colour-01, ...). The holdout suite is drawn as the
full suite is, from another random stream: settings are chosen on ``full`` and never on it, so its
figures say how a choice holds on edits it was not made on. Targets always name the background so
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
from ..shapes.world import SIZE

KINDS = ("colour", "shape", "background", "two")
ATTRS = {"shape": SHAPES, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS)}
SIZES = {"quick": 3, "full": 12, "holdout": 12}
#: The holdout suite draws from the random stream ``[seed, HOLDOUT_STREAM]`` (``seed + 2**32``), which
#: no seed of the other suites below 2**32 reaches.
HOLDOUT_STREAM = 1
#: Suites derived from another: ``reconstruct`` is the quick suite's inputs with nothing to change
#: (the prompt is the input's caption), for measuring how faithfully a method reproduces its input.
DERIVED = {"reconstruct": "quick"}


def _pick_other(rng: np.random.Generator, attr: str, current: str) -> str:
    options = [v for v in ATTRS[attr] if v != current]
    return str(options[int(rng.integers(len(options)))])


def make_suite(name: str = "quick", seed: int = 0, per_kind: int | None = None) -> dict[str, Any]:
    """Generate a suite: ``per_kind`` edits of each kind (3 for "quick", 12 for "full" and
    "holdout")."""
    if name in DERIVED:
        return _reconstruct(make_suite(DERIVED[name], seed, per_kind), name)
    per_kind = per_kind or SIZES.get(name)
    if per_kind is None:
        raise ConfigError(
            f"unknown suite size {name!r}; use quick, full, holdout, reconstruct, or pass per_kind"
        )
    rng = np.random.default_rng([seed, HOLDOUT_STREAM] if name == "holdout" else seed)
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


def _reconstruct(suite: dict[str, Any], name: str) -> dict[str, Any]:
    """Every edit of ``suite`` turned into "change nothing": prompt = source caption, target =
    the scene's own attributes, kind ``reconstruct``."""
    edits = []
    for e in suite["edits"]:
        scene = e["scene"]
        target = {a: scene[a] for a in ATTRS}
        edits.append(
            {
                **e,
                "kind": "reconstruct",
                "prompt": e["source_prompt"],
                "target": target,
                "changes": [],
            }
        )
    return {**suite, "name": name, "edits": edits}


def load_suite(spec: str | Path, seed: int = 0) -> dict[str, Any]:
    """``"quick"`` / ``"full"`` / ``"holdout"`` (generated from ``seed``), ``"reconstruct"``, or
    a path to a suite JSON file.

    A file is checked whole before anything runs, and every problem is a one-line error: an edit's
    id becomes a file name, so it must be a safe name (``paths.SAFE_NAME``) and unique; targets
    and changes must name the world's attributes; a scene must render; an image must load through
    the toolkit's image loader (relative paths are read against the suite file's folder)."""
    if str(spec) in SIZES or str(spec) in DERIVED:
        return make_suite(str(spec), seed)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"suite {spec!r} is neither quick, full, holdout, reconstruct nor a JSON file; check the "
            "path"
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
        if not isinstance(e["id"], str | int) or isinstance(e["id"], bool):
            raise ConfigError(f"{where}: the id must be a name, got {e['id']!r}")
        e["id"] = safe_name(e["id"], f"{where}: id")
        if e["id"].casefold() in seen:  # Cat-1 and cat-1 would be one file on some disks
            raise ConfigError(f"{where}: id {e['id']!r} is used twice; give every edit its own id")
        seen.add(e["id"].casefold())
        where = f"suite '{path}' edit {e['id']!r}"
        if not isinstance(e["prompt"], str) or not e["prompt"].strip():
            raise ConfigError(f"{where}: the prompt must be non-empty text")
        for key in ("source_prompt", "kind"):
            if key in e and not isinstance(e[key], str):
                raise ConfigError(f"{where}: {key} must be text, got {e[key]!r}")
        target, changes = e["target"], e["changes"]
        if not isinstance(target, dict) or set(target) != set(ATTRS):
            raise ConfigError(f"{where}: target must give {', '.join(ATTRS)}")
        for attr, value in target.items():
            if value not in ATTRS[attr]:
                raise ConfigError(
                    f"{where}: target {attr} {value!r} is not one of {', '.join(ATTRS[attr])}"
                )
        if not isinstance(changes, list) or not all(
            isinstance(c, str) and c in ATTRS for c in changes
        ):
            raise ConfigError(f"{where}: changes must list attributes among {', '.join(ATTRS)}")
        if "scene" in e:
            _check_scene(e["scene"], where)
        else:
            image = Path(str(e["image"]))
            if not image.is_absolute():
                image = (path.parent / image).resolve()
            e["image"] = str(image)
            load_image(image, name=f"{where}: image")
    return suite


def _check_scene(scene: Any, where: str) -> None:
    """A scene of the world: known attributes, whole-number geometry with the object inside the
    canvas, a texture seed."""
    if not isinstance(scene, dict):
        raise ConfigError(f"{where}: the scene must be an object")
    try:
        sc = Scene(**scene)
    except TypeError as err:
        raise ConfigError(f"{where}: the scene's fields are wrong ({err})") from None
    for attr in ATTRS:
        if getattr(sc, attr) not in ATTRS[attr]:
            raise ConfigError(
                f"{where}: scene {attr} {getattr(sc, attr)!r} is not one of the world's"
            )
    numbers = {k: getattr(sc, k) for k in ("x0", "y0", "side", "texture_seed")}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers.values()):
        raise ConfigError(f"{where}: scene x0, y0, side and texture_seed must be whole numbers")
    if not (8 <= sc.side <= SIZE and 0 <= sc.x0 <= SIZE - sc.side and 0 <= sc.y0 <= SIZE - sc.side):
        raise ConfigError(
            f"{where}: the scene's object (x0 {sc.x0}, y0 {sc.y0}, side {sc.side}) must lie inside "
            f"the {SIZE}x{SIZE} canvas, side 8 or more"
        )
    if sc.texture_seed < 0:
        raise ConfigError(f"{where}: the scene's texture_seed must be 0 or more")


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
