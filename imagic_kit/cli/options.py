"""The options every model-running command shares (``edit``, ``batch``, ``bench``, ``demo``), added
in one place so that they read and behave the same everywhere."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "tiny-shapes"


def add_model_options(
    p: argparse.ArgumentParser,
    *,
    model: str | None = "backbone preset, local diffusers folder or hub id",
    settings: str | None = "override a config field (repeatable)",
    device: str = "cpu, cuda, cuda:N or mps (default: cuda if available)",
    threads: str = "CPU threads for torch (default: the cores shared among the local processes; "
    "IMAGIC_KIT_NUM_THREADS)",
    quiet: str | None = "no progress bars",
) -> None:
    """Add ``--model`` (None: the command takes none), ``--set KEY=VALUE`` (None: none),
    ``--device``, ``--dtype``, ``--threads`` and ``--quiet``; each text is the option's help."""
    if model is not None:
        p.add_argument(
            "--model",
            default=DEFAULT_MODEL,
            help=f"{model} (default: {DEFAULT_MODEL}, the embedded model)",
        )
    if settings is not None:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=settings)
    p.add_argument("--device", help=device)
    p.add_argument(
        "--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, else float32)"
    )
    p.add_argument("--threads", type=int, help=threads)
    if quiet is not None:
        p.add_argument("--quiet", "-q", action="store_true", help=quiet)
