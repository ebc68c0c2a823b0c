"""Judge a benchmark folder's outputs again with the current oracle (cleanliness included) and
write its report into another folder; for rows made before the cleanliness check.

    python docs/experiments/2026-12-08-cleanliness/rejudge.py OLD NEW --suite full
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from PIL import Image

from imagic_kit.bench.metrics import evaluate_edit
from imagic_kit.bench.report import write_report
from imagic_kit.bench.store import FIELDS
from imagic_kit.bench.suites import make_suite, source_image

p = argparse.ArgumentParser()
p.add_argument("old")
p.add_argument("new")
p.add_argument("--suite", default="full")
args = p.parse_args()
old, new = Path(args.old), Path(args.new)
suite = make_suite(args.suite)
edits = {e["id"]: e for e in suite["edits"]}
shutil.copytree(old / "images", new / "images", dirs_exist_ok=True)
rows = []
with open(old / "results.csv", newline="") as f:
    for r in csv.DictReader(f):
        e = edits[r["edit_id"]]
        m = evaluate_edit(source_image(e), Image.open(old / r["image"]), e["target"], e["changes"])
        rows.append({k: str(m.get(k, r.get(k, ""))) for k in FIELDS})
with open(new / "results.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
write_report(rows, suite, new, f"{args.suite} suite, judged again with the cleanliness check")
