"""Batch manifests: the edits of a batch run, one row each, in CSV or JSONL.

Columns: ``image``, ``prompt``, ``method`` (required); ``source_prompt``, ``preset``, ``seed``,
``output`` (optional); any config field of the row's method as an override (an empty cell keeps
the default). Relative image paths are read against the manifest's folder. A method that takes
several images (``decor``'s references) gets them as a list in JSONL (``"image": ["a.png",
"b.png"]``) or separated by ``;`` in a CSV cell (``a.png;b.png``).

Reading checks the file as a whole and stops with every problem listed (unparseable, a required
column missing). A row whose own values are wrong (unknown method or field, a bad value, a
missing or unreadable image) is not a reason to stop: it becomes a failed row, and the others run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import check_seed, field_infos
from ..errors import ConfigError, ImagicKitError
from ..paths import safe_name
from ..registry import get_method, make_config

REQUIRED = ("image", "prompt", "method")
OPTIONAL = ("source_prompt", "preset", "seed", "output")


@dataclass
class Row:
    """One edit of the manifest: its number (from 1, the header not counted), what it asks for,
    and, when its values are wrong, the one-line reason it fails."""

    number: int
    images: list[Path]
    prompt: str
    method: str
    source_prompt: str | None = None
    preset: str | None = None
    seed: int = 0
    output: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    config: Any = None
    error: str | None = None

    @property
    def image(self) -> Path | None:
        """The first image (the one the output is named after), None when none was given."""
        return self.images[0] if self.images else None

    def key(self, backbone: Any) -> str:
        """A hash of everything the row's image depends on: a rerun skips a row whose output holds
        the same key and redoes one whose prompt, value, seed or image changed."""
        blob = json.dumps(
            {
                "image": [_file_sha256(p) if p.is_file() else None for p in self.images]
                if len(self.images) > 1
                else _file_sha256(self.image)
                if self.image and self.image.is_file()
                else None,
                "prompt": self.prompt,
                "source_prompt": self.source_prompt,
                "method": self.method,
                "config": _config_dict(self.config),
                "seed": self.seed,
                "model": backbone.model_id,
                "revision": backbone.revision,
                "dtype": str(backbone.dtype),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _config_dict(config: Any) -> dict[str, Any] | None:
    from ..config import to_dict

    return None if config is None else to_dict(config)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(
    path: str | Path, default_seed: int = 0, defaults: dict[str, str] | None = None
) -> list[Row]:
    """The rows of a CSV or JSONL manifest (see the module docstring). ``defaults`` (the CLI's
    ``--set``) gives config fields to every row whose method has them; a row's own cell wins."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest '{path}' does not exist; give a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is dropped
    except UnicodeDecodeError:
        raise ConfigError(f"manifest '{path}' is not UTF-8 text; save it as UTF-8") from None
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.split("\n"), 1):  # only \n ends a record
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {n}: not JSON ({e.msg})")
                continue
            if not isinstance(rec, dict):
                problems.append(f"line {n}: not an object")
                continue
            records.append(rec)
        columns = sorted({k for r in records for k in r})
        missing = [c for c in REQUIRED if not all(c in r for r in records)]
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # quoted newlines stay
        columns = list(reader.fieldnames or [])
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            problems.append(f"columns named twice: {', '.join(dup)}")
        for n, rec in enumerate(reader, 2):
            if None in rec or any(v is None for v in rec.values()):
                problems.append(f"line {n}: {len(columns)} columns expected")
                continue
            records.append(rec)
        missing = [c for c in REQUIRED if c not in columns]
    else:
        raise ConfigError(f"manifest '{path}': use a .csv or .jsonl file")
    if missing:
        problems.insert(0, f"required column(s) missing: {', '.join(missing)}")
    if not records and not problems:
        problems.append("no rows")
    if problems:
        raise ConfigError(f"manifest '{path}' cannot be run: {'; '.join(problems[:10])}")
    rows = [
        _row(n, rec, path.parent, default_seed, defaults or {}) for n, rec in enumerate(records, 1)
    ]
    _check_defaults(rows, defaults or {})
    return rows


def _check_defaults(rows: list[Row], defaults: dict[str, str]) -> None:
    """A ``--set`` key that no row's method has is a mistake (a typo), not a no-op."""
    known: set[str] = set()
    for method in {r.method for r in rows}:
        try:
            known |= {i.name for i in field_infos(get_method(method).config_cls)}
        except ImagicKitError:
            continue  # that row fails on its own
    unused = sorted(k for k in defaults if k not in known)
    if unused:
        raise ConfigError(
            f"--set {', '.join(unused)}: not a field of any method in the manifest; "
            "see `imagic-kit show-config METHOD`"
        )


def _row(
    number: int, rec: dict[str, Any], base: Path, default_seed: int, defaults: dict[str, str]
) -> Row:
    wrong = [k for k in ("image", "prompt", "method", "source_prompt", "preset", "output")
             if rec.get(k) is not None and not isinstance(rec[k], str)
             and not (k == "image" and isinstance(rec[k], list)
                      and all(isinstance(v, str) for v in rec[k]))]  # fmt: skip
    text = {k: ("" if v is None else v) for k, v in rec.items()}
    cell = text.get("image", "")
    paths = cell if isinstance(cell, list) else str(cell).split(";")
    paths = [p.strip() for p in paths if isinstance(p, str) and p.strip()]
    row = Row(
        number=number,
        images=[Path(p) if Path(p).is_absolute() else base / p for p in paths],
        prompt=str(text.get("prompt", "")),
        method=str(text.get("method", "")).strip(),
        source_prompt=str(text.get("source_prompt", "")).strip() or None,
        preset=str(text.get("preset", "")).strip() or None,
        output=str(text.get("output", "")).strip(),
    )
    try:
        if wrong:
            raise ConfigError(
                f"{', '.join(wrong)} must be text"
                + (" (image: a path, or a list of paths)" if "image" in wrong else "")
            )
        if (
            row.preset
            and row.preset.endswith((".yaml", ".yml"))
            and not Path(row.preset).is_absolute()
        ):
            row.preset = str(base / row.preset)  # a preset file is read against the manifest too
        seed = str(text.get("seed", "")).strip()
        row.seed = default_seed if seed == "" else _seed(seed)
        spec = get_method(row.method)
        infos = {i.name for i in field_infos(spec.config_cls)}
        extra = {
            k: v for k, v in text.items() if k not in REQUIRED + OPTIONAL and str(v).strip() != ""
        }
        unknown = sorted(k for k in extra if k not in infos)
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)} {'is not a field' if len(unknown) == 1 else 'are not fields'} "
                f"of {row.method!r} (see `imagic-kit show-config {row.method}`)"
            )
        extra = {**{k: v for k, v in defaults.items() if k in infos}, **extra}
        row.overrides = extra
        row.config = make_config(row.method, None, row.preset, **extra)
        if not row.prompt.strip():
            raise ConfigError("the prompt is empty")
        if row.image is None:
            raise ConfigError("no image given")
        if row.output:
            safe_name(Path(row.output).stem, "output")
            if Path(row.output).name != row.output or Path(row.output).suffix.lower() != ".png":
                raise ConfigError(f"output {row.output!r} must be a file name ending in .png")
    except ImagicKitError as e:
        row.error = str(e)
    return row


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"seed {text!r} must be a whole number") from None
    return check_seed(value)


def output_names(row: Row) -> list[str]:
    """Every PNG the row writes: its output name, then ``stem-1.png``... for further images."""
    from ..selection import images_per_prompt

    first = output_name(row)
    n = images_per_prompt(row.config) if row.config is not None else 1
    return [first] + [f"{Path(first).stem}-{i}.png" for i in range(1, n)]


def check_outputs(rows: list[Row]) -> None:
    """No two rows write one file (names compared as case-insensitive disks would)."""
    seen: dict[str, int] = {}
    for row in rows:
        for name in output_names(row):
            other = seen.setdefault(name.casefold(), row.number)
            if other != row.number:
                raise ConfigError(
                    f"rows {other} and {row.number} both write {name}; give them distinct outputs"
                )


def output_name(row: Row) -> str:
    """The row's PNG name in the output folder: its ``output`` cell, or one made from the row
    number, the image's name and the method (only letters, digits, '.', '_', '-')."""
    if row.output:
        return row.output
    stem = "".join(
        c if c.isalnum() or c in "._-" else "_" for c in (row.image.stem if row.image else "row")
    )
    return f"{row.number:05d}-{stem.strip('._-')[:60] or 'image'}-{row.method or 'edit'}.png"
