"""Try best-of-N rankings offline on candidates the oracle has judged.

`imagic-kit bench ... --judge-candidates` writes candidates.csv: every candidate of every edit with
the oracle's verdict and the ranking's three measures (CLIP score, outline similarity, fidelity).
This script re-ranks those same candidates with other rankings (ranking.score_candidates, the
code `edit` ranks with) and prints how many picks succeed, against the oracle's best (some
candidate succeeds). No sampling: a grid of rankings over a full suite takes seconds.

    python scripts/rerank.py BENCH_DIR_OR_CSV [...] \\
        [--rank-by clip+structure+fidelity,clip+structure] \\
        [--structure-weight 0.25,0.5,1] [--fidelity-weight 0,0.25,0.5] [--first 16]

Each (rank_by, structure weight, fidelity weight) combination is one row; each input one column
(picks that succeed / edits), plus their total. ``--first N`` keeps the first N candidates of each
edit: exactly what a run with ``candidates=N`` would have drawn when N is a multiple of the sampling
batch (8, ``api.SAMPLE_CHUNK``), since the candidates come from one generator in batches of 8.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagic_kit.ranking import rank_terms, score_candidates  # noqa: E402


def load(path: Path, first: int | None = None) -> dict[tuple[str, str, str], list[dict[str, str]]]:
    """candidates.csv -> {(label, sweep, edit_id): rows in drawing order} (the first ``first``)."""
    csv_path = path / "candidates.csv" if path.is_dir() else path
    if not csv_path.is_file():
        sys.exit(f"{csv_path}: not found; run `imagic-kit bench ... --judge-candidates` first")
    edits: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    with csv_path.open(newline="") as f:
        for r in csv.DictReader(f):
            if first is None or int(r["index"]) < first:
                edits[(r["label"], r["sweep"], r["edit_id"])].append(r)
    for rows in edits.values():
        rows.sort(key=lambda r: int(r["index"]))
    return edits


def picks(edits, rank_by: str, structure_weight: float, fidelity_weight: float) -> int:
    """How many edits' picks succeed under this ranking."""
    ok = 0
    for rows in edits.values():
        clip = None if rows[0]["rank_clip"] == "" else [float(r["rank_clip"]) for r in rows]
        order, _ = score_candidates(
            clip,
            [float(r["rank_structure"]) for r in rows],
            [float(r["rank_fidelity"]) for r in rows],
            rank_by=rank_by,
            structure_weight=structure_weight,
            fidelity_weight=fidelity_weight,
        )
        ok += rows[order[0]]["success"] == "True"
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="bench folders or candidates.csv files")
    p.add_argument("--rank-by", default="clip+structure+fidelity,clip+structure")
    p.add_argument("--structure-weight", default="0.5")
    p.add_argument("--fidelity-weight", default="0.25")
    p.add_argument("--first", type=int, help="only the first N candidates of each edit")
    a = p.parse_args(argv)
    sets = [load(x, a.first) for x in a.inputs]
    floats = lambda s: [float(v) for v in s.split(",")]  # noqa: E731
    rankings = list(
        itertools.product(
            a.rank_by.split(","), floats(a.structure_weight), floats(a.fidelity_weight)
        )
    )
    for rank_by, _, _ in rankings:
        rank_terms(rank_by)  # fail early on a typo
    n = [len(e) for e in sets]
    some = [sum(any(r["success"] == "True" for r in rows) for rows in e.values()) for e in sets]
    recorded = [
        sum(any(r["success"] == "True" and r["rank"] == "0" for r in rows) for rows in e.values())
        for e in sets
    ]
    names = [str(x) for x in a.inputs]
    print("| ranking | " + " | ".join(names) + " | total |")
    print("|---|" + "---|" * (len(names) + 1))

    def row(label: str, vals: list[int]) -> None:
        cells = [f"{v}/{k}" for v, k in zip(vals, n)]
        print(f"| {label} | " + " | ".join(cells) + f" | {sum(vals)}/{sum(n)} |")

    row("oracle (some candidate succeeds)", some)
    if a.first is None:  # the bench ranked all of them
        row("as recorded (the bench's ranking)", recorded)
    seen = set()
    for rank_by, sw, fw in rankings:
        terms = rank_terms(rank_by)  # weights of absent terms do not matter: one row each
        key = (rank_by, sw if "structure" in terms else None, fw if "fidelity" in terms else None)
        if key in seen:
            continue
        seen.add(key)
        label = rank_by + "".join(
            f" {k}={v}" for k, v in (("sw", key[1]), ("fw", key[2])) if v is not None
        )
        row(label, [picks(e, rank_by, sw, fw) for e in sets])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
