"""Try best-of-N rankings offline on candidates the oracle has judged.

`imagic-kit bench ... --judge-candidates` writes candidates.csv: every candidate of every edit with
the oracle's verdict and the ranking's three measures (CLIP score, outline similarity, fidelity).
This script re-ranks those same candidates with other rankings (ranking.score_candidates, the
code `edit` ranks with) and prints how many picks succeed, against the oracle's best (some
candidate succeeds). No sampling: a grid of rankings over a full suite takes seconds.

    python scripts/rerank.py BENCH_DIR_OR_CSV [...] \\
        [--rank-by clip+structure+fidelity,clip+structure] \\
        [--structure-weight 0.25,0.5,1] [--fidelity-weight 0,0.25,0.5] [--first 16] [--by-kind]

Each (rank_by, structure weight, fidelity weight) combination is one row; each input and setting
(method and sweep value) one column (picks that succeed / edits), plus their total. Without CLIP
scores (a model with no CLIP) the clip term is dropped, as `edit` does. ``--first N`` keeps the
first N candidates of each edit: exactly what a run with ``candidates=N`` would have drawn when N
is a multiple of the sampling batch (8, ``selection.SAMPLE_CHUNK``), since the candidates come from one
generator in batches of 8. ``--by-kind`` splits each column by edit kind.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagic_kit.bench.report import judged_edits  # noqa: E402
from imagic_kit.bench.store import read_results  # noqa: E402
from imagic_kit.ranking import rank_terms, score_candidates, without_clip  # noqa: E402

Edits = dict[str, list[dict[str, str]]]


def load(path: Path, first: int | None = None, by_kind: bool = False) -> dict[str, Edits]:
    """A bench folder or candidates.csv -> {column name: {edit_id: candidates in drawing order}}:
    one column per method and setting (and edit kind, with ``by_kind``)."""
    csv_path = path / "candidates.csv" if path.is_dir() else path
    if not csv_path.is_file():
        sys.exit(f"{csv_path}: not found; run `imagic-kit bench ... --judge-candidates` first")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"index", "rank", "success", "rank_clip"} - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"{csv_path}: not a candidates.csv of `imagic-kit bench --judge-candidates`")
    # whole rows only: no row cut short, no repeated header
    cands = [c for c in read_results(csv_path) if first is None or int(c["index"]) < first]
    results = csv_path.with_name("results.csv")
    rows = None
    if csv_path.name == "candidates.csv" and results.is_file():  # only edits counted as done
        rows = read_results(results)
    columns: dict[str, Edits] = {}
    for (label, sweep), edits in judged_edits(cands, rows).items():
        name = str(path) + ("" if sweep in ("{}", "") else f" {sweep}") + f" [{label}]"
        for edit_id, cs in edits.items():
            col = f"{name} {cs[0]['kind']}" if by_kind else name
            columns.setdefault(col, {})[edit_id] = cs
    return columns


def pick_succeeds(cs: list[dict[str, str]], rank_by: str, sw: float, fw: float) -> bool:
    clip = None if cs[0]["rank_clip"] == "" else [float(c["rank_clip"]) for c in cs]
    if clip is None:
        rank_by = without_clip(rank_by)
        if not rank_by:
            return False  # rank_by=clip without CLIP scores ranks nothing
    order, _ = score_candidates(
        clip,
        [float(c["rank_structure"]) for c in cs],
        [float(c["rank_fidelity"]) for c in cs],
        rank_by=rank_by,
        structure_weight=sw,
        fidelity_weight=fw,
    )
    return cs[order[0]]["success"] == "True"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="bench folders or candidates.csv files")
    p.add_argument("--rank-by", default="clip+structure+fidelity,clip+structure")
    p.add_argument("--structure-weight", default="0.5")
    p.add_argument("--fidelity-weight", default="0.25")
    p.add_argument("--first", type=int, help="only the first N candidates of each edit")
    p.add_argument("--by-kind", action="store_true", help="one column per edit kind")
    a = p.parse_args(argv)
    columns: dict[str, Edits] = {}
    for x in a.inputs:
        columns.update(load(x, a.first, a.by_kind))
    floats = lambda s: [float(v) for v in s.split(",")]  # noqa: E731
    rankings = []
    for rank_by, sw, fw in itertools.product(
        a.rank_by.split(","), floats(a.structure_weight), floats(a.fidelity_weight)
    ):
        try:
            terms = rank_terms(rank_by)
        except ValueError as e:
            sys.exit(f"--rank-by: {e}")
        # the weight of an absent term does not matter: one row for each distinct ranking
        key = (rank_by, sw if "structure" in terms else None, fw if "fidelity" in terms else None)
        if key not in [k for k, _ in rankings]:
            rankings.append((key, (rank_by, sw, fw)))
    edits = list(columns.values())
    n = [len(e) for e in edits]
    print("| ranking | " + " | ".join(columns) + " | total |")
    print("|---|" + "---|" * (len(columns) + 1))

    def row(label: str, vals: list[int]) -> None:
        cells = [f"{v}/{k}" for v, k in zip(vals, n)]
        print(f"| {label} | " + " | ".join(cells) + f" | {sum(vals)}/{sum(n)} |")

    def count(test) -> list[int]:
        return [sum(bool(test(cs)) for cs in e.values()) for e in edits]

    row(
        "oracle (some candidate succeeds)",
        count(lambda cs: any(c["success"] == "True" for c in cs)),
    )
    if a.first is None:  # the bench ranked all of them
        row(
            "as recorded (the bench's ranking)",
            count(lambda cs: any(c["success"] == "True" and c["rank"] == "0" for c in cs)),
        )
    for (rank_by, sw_key, fw_key), (_, sw, fw) in rankings:
        label = rank_by + "".join(
            f" {k}={v}" for k, v in (("sw", sw_key), ("fw", fw_key)) if v is not None
        )
        row(label, count(lambda cs: pick_succeeds(cs, rank_by, sw, fw)))  # noqa: B023
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
