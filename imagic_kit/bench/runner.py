"""Run methods (with presets and sweeps) over a suite; resumable; one CSV row per edit and setting.

Rows are appended to ``results.csv`` as edits finish, so an interrupted run keeps its work and a
rerun skips what is done. Every edit runs the lifecycle every front end shares
(``lifecycle.py``): its fit is kept and reused across sample-stage sweep values (only a change of a
fit-stage field refits), as the pipelines reuse fits for users.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..clip_score import load_clip
from ..config import check_seed, field_infos, parse_value, to_dict
from ..errors import ConfigError
from ..fit_cache import FitCache
from ..imaging import fit_to_square, pil_to_tensor, save_png, tensor_to_pil
from ..lifecycle import run
from ..paths import safe_name
from ..progress import ProgressOptions
from ..registry import get_method, make_config
from ..request import prepare
from .memory import PeakMemory
from .metrics import evaluate_edit, psnr
from .store import (
    CANDIDATE_FIELDS,
    FIELDS,
    ORACLE_FIELDS,
    append_rows,
    read_results,
    repair_tail,
    resumable,
    start_csv,
)
from .suites import source_image


def parse_methods(spec: str) -> list[tuple[str, str | None]]:
    """``"sdedit,imagic@fast"`` -> ``[("sdedit", None), ("imagic", "fast")]`` (validated)."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, preset = item.partition("@")
        make_config(name, None, preset or None)  # raises on unknown method or preset
        out.append((name, preset or None))
    if not out:
        raise ConfigError("--methods is empty; e.g. --methods sdedit,ddim")
    return out


def _label(method: str, preset: str | None) -> str:
    return f"{method}@{preset}" if preset else method


def recipe_id(model_id: str, config: Any, seed: int, edit_spec: dict[str, Any]) -> str:
    """A short hash of everything a results row depends on (the model, the whole resolved config,
    the seed, the edit itself): a row is only reused (resumed) by a run that would compute it the
    same way."""
    blob = json.dumps(
        {"model": model_id, "config": to_dict(config), "seed": seed, "edit": edit_spec},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def check_plan(
    suite: dict[str, Any],
    methods: list[tuple[str, str | None]],
    sweep: dict[str, list[str]],
    overrides: dict[str, str],
    *,
    limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, dict[str, Any]]:
    """Refuse, before a model is loaded or a file written, what the run could not do: a shard
    that does not exist, a limit under 1, edit ids that cannot name files, ``--set`` / ``--sweep``
    keys that no method has. Returns each method's fields."""
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard {i}/{n} is impossible; use I/N with 0 <= I < N, e.g. 0/2 and 1/2")
    ids = [safe_name(e.get("id"), "edit id") for e in suite["edits"]]  # they become file names
    if len({i.casefold() for i in ids}) != len(ids):  # Cat-1 and cat-1 are one file on some disks
        raise ConfigError("the suite uses an edit id twice; give every edit its own id")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit {limit}: give at least 1 edit (or no limit for the whole suite)")
    fields_of = {m: {i.name: i for i in field_infos(get_method(m).config_cls)} for m, _ in methods}
    for kind, keys in (("--set", overrides), ("--sweep", sweep)):
        unknown = [k for k in keys if not any(k in f for f in fields_of.values())]
        if unknown:
            raise ConfigError(
                f"{kind} key(s) {', '.join(unknown)} belong to none of the methods benchmarked "
                f"({', '.join(fields_of)}); see `imagic-kit show-config METHOD`"
            )
    for method, preset in methods:  # every value in range, for every method that takes it
        infos = fields_of[method]
        own = {k: v for k, v in overrides.items() if k in infos}
        make_config(method, None, preset, **own)
        for key in (k for k in sweep if k in infos):
            for value in sweep[key]:
                make_config(method, None, preset, **{**own, key: value})
    return fields_of


def run_benchmark(
    backbone,
    suite: dict[str, Any],
    methods: list[tuple[str, str | None]],
    out: str | Path,
    *,
    seed: int = 0,
    sweep: dict[str, list[str]] | None = None,
    overrides: dict[str, str] | None = None,
    progress: bool = True,
    limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
    judge_candidates: bool = False,
) -> list[dict[str, Any]]:
    """Run every (method, sweep setting) on every edit of ``suite``; returns all rows (old and new).

    ``shard=(i, n)`` runs only the edits whose index is ``i`` modulo ``n``: n processes (or machines
    sharing the folder) with i = 0..n-1 split a suite; they append to the same ``results.csv`` one
    whole line at a time, and the rows returned (and any report written from them) include every
    shard's rows finished so far.

    ``judge_candidates``: for best-of-N settings (``candidates`` > 1) the oracle also judges every
    candidate, written to ``candidates.csv`` with the ranking's features: how often some candidate
    succeeds (what a perfect ranking would reach) and material to try other rankings on; every
    candidate's image is kept too (``images/<label>/<setting>/candidates/<edit>.png``, a lossless
    strip in drawing order; ``load_strip`` splits it), for measures candidates.csv does not hold."""
    sweep = sweep or {}
    overrides = overrides or {}
    fields_of = check_plan(suite, methods, sweep, overrides, limit=limit, shard=shard)
    check_seed(seed, "seed")
    i, n = shard
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    for path in (results, out / "candidates.csv"):
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path} is not a file; remove it or write to a new --out folder")
        if path.is_file():
            repair_tail(path)  # before reading: a cut row is not counted as done
    done = {(r["label"], r["sweep"], r["edit_id"]): r["recipe"] for r in resumable(results)}
    clip_path = backbone.clip_path
    clip = load_clip(clip_path) if clip_path else None  # the one best-of-N ranks with, if any
    edits = suite["edits"][:limit] if limit else suite["edits"]
    edits = edits[i::n]
    plans = []
    for method, preset in methods:
        spec = get_method(method)
        infos = fields_of[method]
        # --set and --sweep apply to the methods that have the field
        own = {k: v for k, v in overrides.items() if k in infos}
        keys = [k for k in sweep if k in infos]
        combos = [
            dict(zip(keys, vals)) for vals in itertools.product(*(sweep[k] for k in keys))
        ] or [{}]
        for combo in combos:
            cfg = make_config(method, None, preset, **own, **combo)
            sweep_label = json.dumps(
                {k: parse_value(infos[k], v) for k, v in combo.items()}, sort_keys=True
            )
            plans.append((method, preset, spec, cfg, sweep_label))
    model_id = getattr(backbone, "model_id", "unknown")
    recipes = {
        (_label(m, p), sl, e["id"]): recipe_id(model_id, c, seed, e)
        for m, p, _, c, sl in plans
        for e in edits
    }
    stale = sorted({f"{k[0]} {k[1]}" for k, rid in recipes.items() if done.get(k, rid) != rid})
    if stale:  # resuming would mix two recipes under one label
        raise ConfigError(
            f"{results} already holds results of {', '.join(stale[:3])} made with another recipe "
            "(a default, preset, --set value, the seed, the suite or the model changed); "
            "write to a new --out folder"
        )
    total = len(plans) * len(edits)
    bar = ProgressOptions(enabled=progress)(total, "bench")
    cand_path = out / "candidates.csv"
    if judge_candidates:  # checked first: a refused folder gets nothing written
        start_csv(cand_path, CANDIDATE_FIELDS)
    start_csv(results, FIELDS)
    cand_file = cand_path.open("a", newline="") if judge_candidates else None
    with results.open("a", newline="") as f, cand_file or contextlib.nullcontext():
        for e in edits:
            src = source_image(e)
            vae_psnr = _vae_psnr(backbone, src)
            src_path = out / "images" / "inputs" / f"{e['id']}.png"
            if not src_path.exists():
                save_png(src, src_path, {"suite": suite.get("name"), "edit": e["id"]})
            # one edit's fits, kept per label: a preset's rows time its own fit
            fits: dict[str, FitCache] = {}
            for method, preset, spec, cfg, sweep_label in plans:
                label = _label(method, preset)
                if (label, sweep_label, e["id"]) in done:  # same recipe (checked above)
                    bar.update()
                    continue
                req = prepare(
                    src,
                    e["prompt"],
                    method=method,
                    config=cfg,
                    source_prompt=e.get("source_prompt")
                    if spec.source_prompt != "unused"
                    else None,
                    seed=seed,
                )
                with PeakMemory(backbone.device) as mem:
                    r = run(
                        backbone,
                        req,
                        fits=fits.setdefault(label, FitCache(len(plans))),
                        progress=False,
                    )
                img_path = out / "images" / _safe(label) / _safe(sweep_label) / f"{e['id']}.png"
                r.save(img_path)
                m = evaluate_edit(src, r.image, e["target"], e["changes"])
                row = {
                    "label": label,
                    "method": method,
                    "preset": preset or "",
                    "sweep": sweep_label,
                    "edit_id": e["id"],
                    "kind": e.get("kind", ""),
                    "prompt": e["prompt"],
                    "seed": seed,
                    "recipe": recipes[(label, sweep_label, e["id"])],
                    **m,
                    "vae_psnr": vae_psnr,
                    "clip_score": round(clip(r.image, e["prompt"]), 4) if clip else "",
                    "fit_s": round(r.fit.meta.get("fit_s", r.timings["fit_s"]), 3),
                    "sample_s": round(r.timings["sample_s"], 3),
                    "fit_reused": r.fit_reused,
                    "peak_mem_mb": round(mem.peak, 1),
                    "device": str(backbone.device),
                    "image": str(img_path.relative_to(out)),
                }
                if cand_file is not None and r.ranking is not None:
                    # before the results row: an edit that counts as done has its candidates
                    _save_strip(r.candidates, img_path.parent / "candidates" / img_path.name)
                    _judge_candidates(cand_file, row, r, src, e)
                append_rows(f, FIELDS, [row])
                bar.update(success=int(m["success"]))
    bar.close()
    return read_results(results)


def _vae_psnr(backbone: Any, image: Image.Image) -> float:
    """PSNR of ``image`` after the model's VAE round trip at the model's resolution: the best a
    method that works in the latent space can reproduce it (the ``psnr`` column's ceiling)."""
    square = fit_to_square(image.convert("RGB"), backbone.resolution, "crop")  # as edit() does
    with torch.no_grad():
        latents = backbone.encode_latents(pil_to_tensor(square).to(backbone.device))
        back = tensor_to_pil(backbone.decode_latents(latents))[0]
    if back.size != image.size:  # a 512 px model on the 64 px world: compare at the world's size
        back = back.resize(image.size, Image.Resampling.BOX)
    return round(psnr(np.asarray(image.convert("RGB")), np.asarray(back)), 3)


def _save_strip(images: list, path: Path) -> None:
    """The candidates of one edit side by side in drawing order, lossless (one PNG per edit):
    material for trying measures that candidates.csv does not hold (``load_strip`` splits it)."""
    w, h = images[0].size
    strip = Image.new("RGB", (w * len(images), h))
    for i, im in enumerate(images):
        strip.paste(im.convert("RGB"), (i * w, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)


def load_strip(path: str | Path, n: int | None = None) -> list:
    """The candidate images of a strip written by a ``--judge-candidates`` run (``n`` of them;
    by default as many as fit, the images being square)."""
    strip = Image.open(path).convert("RGB")
    n = n or strip.width // strip.height
    if n < 1 or strip.width % n:
        raise ValueError(f"{path}: a strip {strip.width} px wide does not hold {n} images")
    w = strip.width // n
    return [strip.crop((i * w, 0, (i + 1) * w, strip.height)) for i in range(n)]


def _judge_candidates(f, row: dict[str, Any], r, src, e: dict[str, Any]) -> None:
    """Append one ``candidates.csv`` row per candidate of ``r`` (one whole edit in one write), with
    the ranking's measures unrounded so that scripts/rerank.py reproduces its picks exactly."""
    rk = r.ranking
    rank = {i: pos for pos, i in enumerate(rk.order)}
    lines = []
    for i, im in enumerate(r.candidates):
        m = evaluate_edit(src, im, e["target"], e["changes"])
        lines.append(
            {
                **{k: row[k] for k in ("label", "sweep", "edit_id", "kind", "seed", "recipe")},
                "index": i,
                "rank": rank[i],
                **{k: m[k] for k in ORACLE_FIELDS},
                "rank_by": rk.rank_by,  # after the fallback, when there is no CLIP
                "structure_weight": r.config.structure_weight,
                "fidelity_weight": r.config.fidelity_weight,
                "rank_clip": "" if rk.text is None else rk.text[i],
                "rank_structure": rk.structure[i],
                "rank_fidelity": rk.fidelity[i],
                "rank_score": rk.scores[i],
            }
        )
    append_rows(f, CANDIDATE_FIELDS, lines)


def _safe(s: str) -> str:
    """A folder name for a label or a sweep setting (letters, digits, '.', '_', '-', '=')."""
    if s in ("{}", ""):
        return "default"
    s = s.strip("{}").replace('"', "").replace(": ", "=").replace(", ", "_").replace("@", "-")
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in s)
