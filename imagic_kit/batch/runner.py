"""Run a batch manifest: one PNG per row, resumable, failures recorded, fits shared, scale-out.

Every row's output is written atomically and carries its recipe plus the row's key (a hash of its
image, prompt, method, resolved config, seed and model): a rerun skips rows whose output holds
the same key and redoes the others, so a run killed at any moment loses no finished row and
leaves no half-written file. A row that fails (a bad value, an unreadable image, NaN, out of
memory) is recorded with its one-line error and the batch goes on.

Rows with the same image, method and seed run one after another, and the lifecycle's fit cache
(``lifecycle.FitCache``, per seed) reuses a fit when only sample-stage values differ (a sweep over
eta fits once); a fit is offered only to rows of its own seed, so a row's output does not depend on
which row ran first.

Several processes (``accelerate launch``) split the rows by those groups, so
none is done twice or missed; each writes its part of the summary and the main process merges
them into ``summary.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import ImagicKitError
from ..imaging import json_text, read_recipe, save_png, write_atomic
from .manifest import Row, check_outputs, output_name, output_names

FIT_CACHE = 4  # fits kept while a process walks through its rows


def group_rows(rows: list[Row]) -> list[list[Row]]:
    """Rows grouped by (image, method, seed), in manifest order of each group's first row: the
    rows that may share a fit (a fit depends on its seed, so a row's image does not depend on
    which row of its group ran first)."""
    groups: OrderedDict[tuple, list[Row]] = OrderedDict()
    for r in rows:
        groups.setdefault(_group(r), []).append(r)
    return list(groups.values())


def _group(r: Row) -> tuple:
    return (tuple(map(str, r.images)), r.method, r.seed)


def _images(r: Row) -> str:
    return ";".join(map(str, r.images))


def share(rows: list[Row], rank: int, world: int) -> list[Row]:
    """This process's rows: every ``world``-th group (image, method, seed), from ``rank``."""
    return [r for k, g in enumerate(group_rows(rows)) if k % world == rank for r in g]


def run_batch(
    backbone,
    rows: list[Row],
    out: str | Path,
    *,
    rank: int = 0,
    world: int = 1,
    save_fits: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run this process's share of ``rows`` into ``out``; returns its part of the summary."""
    from ..fit_cache import FitCache
    from ..lifecycle import run
    from ..request import prepare

    out = Path(out)
    check_outputs(rows)
    out.mkdir(parents=True, exist_ok=True)
    if world == 1:  # files a killed run was writing (no other process is writing now)
        for stale in [*out.glob(".*.tmp"), *out.glob("fits/.*.tmp")]:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    if rank == 0:
        (out / "summary.json").unlink(missing_ok=True)  # an earlier run's summary is not this one
    mine = share(rows, rank, world)
    done = skipped = 0
    failures: list[dict[str, Any]] = []
    fits = FitCache(FIT_CACHE, per_seed=True)
    t0 = time.perf_counter()
    from ..progress import ProgressOptions

    bar = ProgressOptions(enabled=progress and rank == 0)(
        len(mine), f"batch (process {rank + 1}/{world})"
    )
    for row in mine:
        name = output_name(row)
        try:
            if row.error:
                raise _RowError(row.error)
            key = row.key(backbone)
            names = output_names(row)
            if all(_recipe_key(out / n) == key for n in names):
                skipped += 1
                bar.update()
                continue
            req = prepare(
                [str(p) for p in row.images],
                row.prompt,
                method=row.method,
                config=row.config,
                source_prompt=row.source_prompt,
                seed=row.seed,
            )
            r = run(backbone, req, fits=fits, progress=False)
            r.recipe["batch"] = {"row": row.number, "key": key}
            # whether this row found its fit made by an earlier one depends on where a run was
            # interrupted; left out, an output is the same bytes however the batch was run
            r.recipe.pop("fit_reused", None)
            if save_fits:
                r.fit.save(out / "fits" / Path(name).stem)
            # the further images first, the row's own name last: a row counts as done (above)
            # only when all its files hold its key
            for k in reversed(range(len(r.images))):
                save_png(r.images[k], out / names[k], {**r.recipe, "index": k})
            done += 1
        except (ImagicKitError, _RowError) as e:
            failures.append({"row": row.number, "image": _images(row), "error": str(e)})
        except Exception as e:  # any other error of one row must not end the batch
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            failures.append({"row": row.number, "image": _images(row), "error": first[:300]})
        bar.update()
    bar.close()
    part = {
        "process": rank,
        "row_numbers": [r.number for r in mine],
        "rows": len(mine),
        "done": done,
        "skipped": skipped,
        "failed": len(failures),
        "time_s": round(time.perf_counter() - t0, 2),
        "failures": failures,
    }
    write_atomic(out / f".summary-{rank}-of-{world}.json", json_text(part).encode())
    return part


class _RowError(Exception):
    """A row whose own values are wrong (found when the manifest was read)."""


def _recipe_key(path: Path) -> str | None:
    try:
        recipe = read_recipe(path) or {}
    except Exception:  # an unreadable output is redone
        return None
    batch = recipe.get("batch")
    return batch.get("key") if isinstance(batch, dict) else None


def merge_summary(out: str | Path, world: int, total_rows: int, model_id: str) -> dict[str, Any]:
    """The processes' parts merged into ``summary.json``."""
    out = Path(out)
    parts = []
    for rank in range(world):
        p = out / f".summary-{rank}-of-{world}.json"
        parts.append(
            json.loads(p.read_text()) if p.is_file() else {"process": rank, "missing": True}
        )
    for p in parts:
        if p.get("missing"):  # a process that never reported: its rows are not done
            p["failures"] = [
                {"row": 0, "image": "", "error": f"process {p['process']} did not finish"}
            ]
    failures = sorted((f for p in parts for f in p.get("failures", [])), key=lambda f: f["row"])
    summary = {
        "rows": total_rows,
        "done": sum(p.get("done", 0) for p in parts),
        "skipped": sum(p.get("skipped", 0) for p in parts),
        "failed": len(failures),
        "time_s": max((p.get("time_s", 0) for p in parts), default=0),
        "processes": world,
        "rows_by_process": [p.get("row_numbers", []) for p in parts],
        "model": model_id,
        "failures": failures,
    }
    write_atomic(out / "summary.json", json_text(summary).encode())
    for rank in range(world):
        (out / f".summary-{rank}-of-{world}.json").unlink(missing_ok=True)
    return summary
