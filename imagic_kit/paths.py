"""Checks on the paths a run will write, made before the work: a fit that takes minutes must not be
thrown away at the end because its output cannot be written, and nothing the user already has
(the input photo above all) is overwritten.

Every check raises :class:`~imagic_kit.errors.ConfigError` with one line naming the path, the
problem and the fix. The CLI, the API, the benchmark and the scripts share them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

#: What a name taken from a file (an edit id in a suite, a row of a manifest) may look like before
#: it becomes part of a file name: no separators, no "..", no leading dot or dash.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` can be created or replaced: it is not a folder, and its folder exists (or can be
    created) and is writable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder; give a file name, e.g. {path / 'out.png'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} '{path}' exists and cannot be overwritten; choose another path")
    _check_folder_can_hold(path.parent, what, path)
    # the real test: permissions alone do not tell (/proc, read-only mounts)
    if path.parent.is_dir():
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(
                f"{what} '{path}' cannot be written ({e.strerror or e}); choose another path"
            ) from None
    return path


def check_writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder`` exists as a writable folder or can be created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} '{folder}' is a file, not a folder; choose a folder path")
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} '{folder}' is not writable; choose another folder")
        return folder
    _check_folder_can_hold(folder.parent, what, folder)
    return folder


def _check_folder_can_hold(folder: Path, what: str, target: Path) -> None:
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise ConfigError(
            f"{what} '{target}' cannot be written: '{base}' is a file, not a folder; choose "
            "another path"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what} '{target}' cannot be written: '{base}' is not writable; choose another path"
        )


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_inputs(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike], what: str
) -> None:
    """No output is one of the input files (the user's photo is never overwritten)."""
    ins = [Path(p) for p in inputs]
    for out in map(Path, outputs):
        for src in ins:
            if out.resolve() == src.resolve() or _same(out, src):
                raise ConfigError(
                    f"{what} '{out}' is the input image '{src}'; the input is never overwritten: "
                    "choose another output name"
                )


def looks_like_hub_id(s: str) -> bool:
    """``org/name``: what a model hub id looks like, as opposed to a local path."""
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def safe_name(name: object, what: str) -> str:
    """``name`` as a file-name component, refused unless it matches :data:`SAFE_NAME`."""
    text = str(name)
    if not SAFE_NAME.fullmatch(text) or text in (".", ".."):
        raise ConfigError(
            f"{what} {text!r} cannot name a file: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return text
