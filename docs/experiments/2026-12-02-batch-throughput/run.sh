#!/usr/bin/env bash
# Batch throughput with 1 and 2 processes; run from the repository root with .venv set up:
#   bash docs/experiments/2026-12-02-batch-throughput/run.sh
set -euo pipefail
ROOT="$(pwd)"
source "$ROOT/.venv/bin/activate"
WORK="$(mktemp -d)"
cp assets/example.png "$WORK/ex.png"
cp docs/experiments/2026-12-02-batch-throughput/{sdedit,imagic}.csv "$WORK/"
cd "$WORK"
for m in sdedit imagic; do
  imagic-kit batch $m.csv --out o1-$m -q
  accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
    --dynamo_backend no "$ROOT/scripts/batch_edit.py" $m.csv --out o2-$m -q
  for k in o1-$m o2-$m; do
    python3 -c "import json; s = json.load(open('$k/summary.json')); print('$m', s['processes'], 'process(es):', s['done'], 'rows in', s['time_s'], 's =', round(60 * s['done'] / s['time_s'], 1), 'rows/min')"
  done
done
