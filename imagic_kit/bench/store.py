"""The benchmark's CSV store: ``results.csv`` and ``candidates.csv``, one whole line a write under a
lock, so that shards appending together, and a run killed mid-line, leave rows that are whole or
absent; a cut tail is repaired before reading, and a repeated header is skipped."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

FIELDS = [
    "label",
    "method",
    "preset",
    "sweep",
    "edit_id",
    "kind",
    "prompt",
    "seed",
    "recipe",
    "success",
    "target_ok",
    "shape_ok",
    "colour_ok",
    "background_ok",
    "position_ok",
    "size_ok",
    "clean",
    "uniformity",
    "colour_offset",
    "rim",
    "fringe",
    "background_kept",
    "background_psnr",
    "psnr",
    "vae_psnr",
    "centre_shift",
    "side_change",
    "leakage",
    "leaked",
    "read_shape",
    "read_colour",
    "read_background",
    "clip_score",
    "fit_s",
    "sample_s",
    "fit_reused",
    "peak_mem_mb",
    "device",
    "image",
]


ORACLE_FIELDS = (
    "success",
    "target_ok",
    "position_ok",
    "size_ok",
    "clean",
    "background_kept",
    "background_psnr",
)

# --judge-candidates: one row per candidate of a best-of-N edit (candidates.csv), so that a ranking
# can be judged against the oracle offline (scripts/rerank.py) without sampling again


CANDIDATE_FIELDS = [
    "label",
    "sweep",
    "edit_id",
    "kind",
    "seed",
    "recipe",
    "index",
    "rank",
    *ORACLE_FIELDS,
    "rank_by",
    "structure_weight",
    "fidelity_weight",
    "rank_clip",
    "rank_structure",
    "rank_fidelity",
    "rank_score",
]


def read_results(path: Path) -> list[dict[str, str]]:
    """The complete rows of a results (or candidates) CSV; a row cut short is left out."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if complete(r)]


def complete(row: dict) -> bool:
    """A whole row, and not a second copy of the header (which shards of earlier versions could
    write when they started together)."""
    return (
        None not in row
        and all(v is not None for v in row.values())
        and list(row.values()) != list(row.keys())
    )


def repair_tail(path: Path) -> None:
    """Cut a partial last row (a run stopped while writing it: power loss, a full disk) off
    ``path``, so that appending does not glue the next row to it. The edit it belonged to has no
    complete row, so the resumed run redoes it."""
    with path.open("rb+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # no shard writes a row meanwhile (_write_row)
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        keep = 0
        step = 1 << 16
        pos = size
        while pos > 0 and not keep:  # the last newline, read backwards in blocks
            pos = max(0, pos - step)
            f.seek(pos)
            block = f.read(min(step, size - pos))
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = pos + cut + 1
        f.truncate(keep)
    print(
        f"imagic-kit: warning: {path} ended in a partial row ({size - keep} bytes, a run stopped "
        "while writing it); dropped it, its edit will be redone",
        file=sys.stderr,
    )


def append_rows(f, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Rows as one write under an exclusive lock, flushed to disk: shards appending to one file
    never interleave within a row (nor with a starting shard's tail repair), and a finished row
    survives a crash."""
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=fields).writerows(rows)
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def start_csv(path: Path, fields: list[str]) -> None:
    """Create ``path`` with its header row, or check that an existing one has these columns.

    Shards starting together on one ``--out`` take turns under an exclusive lock: the first
    writes the header, the others find it (unlocked, two shards could each find the file empty
    and each write one)."""
    with path.open("a", newline=""):  # exists from here on, possibly empty
        pass
    repair_tail(path)  # a header cut short goes too, and is written again below
    with path.open("r+", newline="") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            header = next(csv.reader(f), None)
            if header is None:  # new, or a crash before the header was on disk
                f.seek(0)
                csv.DictWriter(f, fieldnames=fields).writeheader()
                f.flush()
                os.fsync(f.fileno())
            elif header != fields:
                raise _other_version(path)
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _other_version(path: Path) -> ConfigError:
    return ConfigError(
        f"{path} was written by another version of imagic-kit (its columns differ); "
        "write to a new --out folder"
    )


def resumable(results: Path) -> list[dict[str, str]]:
    """The rows of an existing ``results.csv`` (read once), refused when its columns are not this
    version's (an older file has no ``recipe`` to check a resume against)."""
    if not results.is_file():
        return []
    with results.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and reader.fieldnames != FIELDS:
            raise _other_version(results)
        return [r for r in reader if complete(r)]
