"""Serve the demo: load the model, build the page, launch it on a host and port."""

from __future__ import annotations

import atexit
import shutil

from ..errors import ConfigError
from .app import Demo, DemoOptions, build


def launch(
    model: str = "tiny-shapes",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    options: DemoOptions | None = None,
    block: bool = True,
):
    """Load ``model`` and serve the demo; returns the Blocks (``block=False``: running in a thread,
    stop it with ``.close()``)."""
    import os

    from ..models import load_backbone

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    options = options or DemoOptions()
    demo = Demo(load_backbone(model, device=device, dtype=dtype), options)
    blocks = build(demo)
    atexit.register(shutil.rmtree, options.work_dir, ignore_errors=True)
    try:
        _launch(blocks, host, port, share, block, options)
    except OSError as e:  # the port is taken, the host cannot be bound
        raise ConfigError(
            f"cannot serve on {host}:{port or 'the default port'} ({e.strerror or e}); choose "
            "another --port or --host"
        ) from None
    return blocks


def _launch(blocks, host, port, share, block, options) -> None:
    blocks.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        quiet=not block,  # the served address is printed when it runs in the foreground
        show_error=True,
        max_file_size=int(options.max_upload_mb * 2**20),
        allowed_paths=[str(options.work_dir)],
    )
