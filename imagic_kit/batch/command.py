"""``imagic-kit batch MANIFEST --out DIR``: run a manifest of edits, on one process or, under
``accelerate launch``, on many. Registered through the entry-point group ``imagic_kit.commands``;
light to import (the model stack loads in :func:`run`)."""

from __future__ import annotations

import argparse
import os
import sys

from ..cli import Command
from ..cli.options import add_model_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="a .csv or .jsonl file: image, prompt, method, ... per row")
    p.add_argument("--out", required=True, help="output folder (one PNG per row, summary.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of rows without a seed (default 0)")
    p.add_argument("--save-fits", action="store_true", help="also save each row's fit in OUT/fits/")
    add_model_options(
        p,
        model="backbone for every row",
        settings="a config field for every row whose method has it (a row's own cell wins)",
        device="cpu, cuda, ... (under accelerate: each process's own)",
        threads="CPU threads per process (default: cores / processes)",
        quiet="no progress bar",
    )


def one_of_several() -> bool:
    """Whether ``accelerate launch --num_processes N`` (N > 1) started a single process: without
    ``--multi_gpu`` its simple launcher runs one, and says so only through the environment it sets
    (a rendezvous address but no ``WORLD_SIZE``)."""
    env = os.environ
    launched = "ACCELERATE_MIXED_PRECISION" in env or "ACCELERATE_USE_CPU" in env
    mpi = any(k in env for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"))  # mpirun: a world of its own
    return launched and not mpi and "MASTER_PORT" in env and "WORLD_SIZE" not in env


def process_group() -> tuple[int, int, object | None]:
    """(rank, world size, accelerate state) of this process. One process needs no accelerate. Under
    ``accelerate launch`` the processes form one group; on a machine without a GPU it must be
    built with ``cpu=True`` (a plain ``PartialState()`` there gives N unrelated processes of world
    size 1, and every row would run N times)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if one_of_several():
            print(
                "imagic-kit: warning: `accelerate launch` was asked for several processes but "
                "started one (without --multi_gpu it runs one, on a CPU too): this batch runs in "
                "1 process; add --multi_gpu to split it",
                file=sys.stderr,
            )
        return 0, 1, None
    import torch
    from accelerate import PartialState

    state = PartialState() if torch.cuda.is_available() else PartialState(cpu=True)
    return state.process_index, state.num_processes, state


def run(args: argparse.Namespace) -> int:
    from ..config import check_seed, parse_set_args
    from ..paths import check_writable_folder
    from ..threads import configure_threads
    from .manifest import read_manifest

    check_seed(args.seed, "--seed")
    # a malformed manifest stops here, every problem listed
    rows = read_manifest(args.manifest, args.seed, parse_set_args(args.set))
    from .manifest import check_outputs

    check_outputs(rows)  # two rows writing one file: before the model loads
    check_writable_folder(args.out, "--out")
    configure_threads(args.threads, "--threads")
    if args.quiet:
        from ..progress import silence_library_bars

        silence_library_bars()
    rank, world, state = process_group()
    device = args.device
    if (
        state is not None
        and getattr(state, "device", None) is not None
        and state.device.type == "cuda"
    ):
        device = str(state.device)  # each process on its own GPU
    from ..models import load_backbone
    from .runner import merge_summary, run_batch

    backbone = load_backbone(args.model, device=device, dtype=args.dtype)
    part = run_batch(
        backbone, rows, args.out, rank=rank, world=world, save_fits=args.save_fits,
        progress=not args.quiet,
    )  # fmt: skip
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return 1 if part["failed"] else 0
    s = merge_summary(args.out, world, len(rows), backbone.model_id)
    print(
        f"batch: {s['done']} done, {s['skipped']} skipped (already done), {s['failed']} failed, "
        f"{s['time_s']:.1f} s, {world} process(es); {args.out}/summary.json"
    )
    for f in s["failures"][:20]:
        print(f"  row {f['row']} ({f['image']}): {f['error']}")
    return 1 if s["failed"] else 0


COMMAND = Command(
    name="batch",
    help="run a manifest of edits (CSV or JSONL), resumable, on one process or many",
    description="Run a manifest of edits: one PNG per row with its recipe; finished rows are "
    "skipped on a rerun; failed rows are recorded and the others run. Scale out with "
    "`accelerate launch --multi_gpu --num_processes N scripts/batch_edit.py ...`.",
    add_arguments=add_arguments,
    run=run,
)
