"""``imagic-kit demo``: serve the web demo. Registered as a command of the ``imagic-kit`` CLI
through the entry-point group ``imagic_kit.commands``; light to import (gradio loads in :func:`run`)."""

from __future__ import annotations

import argparse

from ..cli import Command
from ..cli.options import add_model_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    add_model_options(p, settings=None, quiet=None)
    p.add_argument("--queue-size", type=int, default=16, help="edits that may wait (default 16)")
    p.add_argument(
        "--cache-size", type=int, default=8, help="fits kept for re-sampling (default 8)"
    )
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="upload limit (default 20)")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..threads import configure_threads

    for name in ("queue_size", "cache_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    import math

    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0) or (
        args.port is not None and not 0 < args.port < 65536
    ):
        raise ConfigError("--max-upload-mb must be positive and --port in 1..65535")
    try:
        from .app import DemoOptions
        from .serve import launch
    except ImportError as e:
        raise ConfigError(
            f"the demo needs gradio ({e}); install it: python3 scripts/setup_env.py --demo"
        ) from None
    configure_threads(args.threads, "--threads")
    options = DemoOptions(
        queue_size=args.queue_size, cache_size=args.cache_size, max_upload_mb=args.max_upload_mb
    )
    print(f"imagic-kit demo: loading {args.model} ...", flush=True)
    launch(
        args.model,
        host=args.host,
        port=args.port,
        share=args.share,
        device=args.device,
        dtype=args.dtype,
        options=options,
        block=True,
    )
    return 0


COMMAND = Command(
    name="demo",
    help="serve the web demo (Gradio)",
    description="Serve the web demo: every method in the browser, fit once and re-sample.",
    add_arguments=add_arguments,
    run=run,
)
