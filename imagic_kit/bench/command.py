"""``imagic-kit bench``: run methods (with presets and sweeps) over a shapes-world edit suite.

Registered as a command of the ``imagic-kit`` CLI through the entry-point group
``imagic_kit.commands`` (pyproject.toml). Light to import: the model stack loads in :func:`run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import Command
from ..cli.options import add_model_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--suite",
        default="quick",
        help="quick (12 edits), full (48: where settings are chosen), holdout (48 more, drawn "
        "apart: never chosen on), reconstruct (the quick suite's inputs, nothing to change: how "
        "faithfully a method reproduces them) or a suite JSON file",
    )
    p.add_argument(
        "--suite-seed",
        type=int,
        default=0,
        help="seed that generates the quick, full and holdout suites",
    )
    p.add_argument("--methods", default="sdedit,ddim", help="comma list of METHOD or METHOD@PRESET")
    p.add_argument(
        "--out", required=True, help="output folder (results.csv, summary.md, plots, index.html)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every edit")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep a config field (repeatable)",
    )
    p.add_argument("--limit", type=int, help="only the first N edits")
    p.add_argument(
        "--shard",
        default="0/1",
        help="I/N: run every N-th edit starting at I; N processes with one --out split a suite",
    )
    p.add_argument(
        "--judge-candidates",
        action="store_true",
        help="best-of-N settings: let the oracle judge every candidate too (candidates.csv; the "
        "report adds how often some candidate succeeds) and keep every candidate's image "
        "(images/<method>/<setting>/candidates/<edit>.png, side by side in drawing order)",
    )
    add_model_options(p, settings="override a field for every method that has it")


def _parse_shard(text: str) -> tuple[int, int]:
    from ..errors import ConfigError

    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/2 and 1/2") from None
    return i, n


def run(args: argparse.Namespace) -> int:
    from ..config import check_seed, parse_set_args, parse_sweep
    from ..errors import ConfigError
    from ..models import load_backbone
    from ..paths import check_writable_folder
    from ..threads import configure_threads
    from .report import write_report
    from .runner import check_plan, parse_methods, run_benchmark
    from .suites import load_suite

    # everything that can be refused is refused before the model loads
    methods = parse_methods(args.methods)
    sweep = parse_sweep(args.sweep)
    overrides = parse_set_args(args.set)
    shard = _parse_shard(args.shard)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: give at least 1 edit (or leave it out)")
    check_seed(args.seed, "--seed")
    check_seed(args.suite_seed, "--suite-seed")
    suite = load_suite(args.suite, args.suite_seed)
    check_plan(suite, methods, sweep, overrides, limit=args.limit, shard=shard)
    check_writable_folder(args.out, "--out")
    configure_threads(args.threads, "--threads")  # before the model loads
    if args.quiet:
        from ..progress import silence_library_bars

        silence_library_bars()
    backbone = load_backbone(args.model, device=args.device, dtype=args.dtype)
    rows = run_benchmark(
        backbone,
        suite,
        methods,
        args.out,
        seed=args.seed,
        sweep=sweep,
        overrides=overrides,
        progress=not args.quiet,
        limit=args.limit,
        shard=shard,
        judge_candidates=args.judge_candidates,
    )
    title = f"{suite.get('name', args.suite)} suite on {backbone.model_id} ({backbone.device})"
    if backbone.timing_only:
        title += " - timing only: random weights, the quality columns are meaningless"
    paths = write_report(rows, suite, args.out, title)
    print(Path(paths["summary"]).read_text().split("\n\nSuccess by")[0])
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


COMMAND = Command(
    name="bench",
    help="benchmark methods on a shapes-world edit suite",
    description="Run methods (with presets and sweeps) over an edit suite; resumable.",
    add_arguments=add_arguments,
    run=run,
)
