"""Per-image fits as artifacts: safetensors + ``run.json``, never pickle.

Layout of an artifacts folder::

    run.json                 method, fit config, model id/revision, seed, input hashes, versions, timings
    embeddings.safetensors   learned tensors (embeddings, inverted latents, ...)
    unet_lora.safetensors    LoRA, loadable by diffusers' ``load_lora_weights(dir, weight_name=...)``
    unet.safetensors         full fine-tuned UNet weights (only for full fine-tuning)

A fit is reused only when the method, model, input image(s), fit-stage config and the inputs the
method's fit depends on (e.g. Imagic's target prompt) all match; the error names what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import ArtifactMismatchError, ConfigError
from .imaging import default_file_mode, json_text
from .lora import LoraSpec, read_lora, save_lora
from .paths import check_writable_folder

FORMAT_VERSION = 2  # 2: run.json lists every file with its SHA-256
EMBEDDINGS, LORA, UNET = "embeddings.safetensors", "unet_lora.safetensors", "unet.safetensors"
#: Everything a saved fit's folder may hold (besides hidden files: OS metadata, temporary files).
FIT_FILES = ("run.json", EMBEDDINGS, LORA, UNET)
OS_FILES = ("Thumbs.db", "desktop.ini")


@dataclass
class Fit:
    """What a method learned from its input image(s)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    lora: dict[str, torch.Tensor] | None = None
    lora_spec: LoraSpec | None = None
    unet_state: dict[str, torch.Tensor] | None = None
    #: JSON-able facts: method, model, fit config, seed, input hashes, timings, ...
    meta: dict[str, Any] = field(default_factory=dict)

    def tensor(self, name: str, device: torch.device | str | None = None) -> torch.Tensor:
        if name not in self.tensors:
            raise ArtifactMismatchError(
                f"the artifacts have no tensor {name!r} (they hold {', '.join(self.tensors) or 'none'}); "
                "refit without --artifacts"
            )
        return self.tensors[name].to(device) if device is not None else self.tensors[name]

    # --- persistence -----------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the fit to ``folder`` as a whole: the files go to a temporary folder beside it,
        which then takes its place, so a crash leaves the previous fit or the new one, never a mix.
        ``run.json`` lists every file with its SHA-256, which :meth:`load` checks."""
        folder = check_save_target(folder)  # resolved: a link to a folder saves into its target
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            files: dict[str, dict[str, Any]] = {}

            def put(name: str, write) -> None:
                write(str(tmp / name))
                files[name] = {"sha256": _sha256(tmp / name)}

            if self.tensors:
                put(EMBEDDINGS, lambda p: save_file(_cpu(self.tensors), p))
            if self.lora is not None:
                assert self.lora_spec is not None
                put(LORA, lambda p: save_lora(p, self.lora, self.lora_spec))
            if self.unet_state is not None:
                put(UNET, lambda p: save_file(_cpu(self.unet_state), p))
            meta = {"format_version": FORMAT_VERSION, **self.meta, "files": files}
            (tmp / "run.json").write_text(json_text(meta))
            for p in tmp.iterdir():
                os.chmod(p, default_file_mode())
            os.chmod(tmp, 0o777 & ~_umask())
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Fit:
        """Read a fit written by :meth:`save`, refusing one that is damaged or not a fit: each file
        must be listed in ``run.json`` and match the SHA-256 listed for it, every tensor must load
        and be finite."""
        folder = Path(folder)
        run = folder / "run.json"
        if not folder.is_dir():
            raise ArtifactMismatchError(
                f"artifacts folder '{folder}' does not exist; pass a folder written by --save-artifacts"
            )
        if not run.is_file():
            raise ArtifactMismatchError(
                f"artifacts folder '{folder}' has no run.json; pass a folder written by --save-artifacts"
            )
        try:
            meta = json.loads(run.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ArtifactMismatchError(
                f"'{run}' is not valid JSON ({why}); refit with --save-artifacts"
            ) from None
        if not isinstance(meta, dict) or not isinstance(meta.get("method"), str):
            raise ArtifactMismatchError(
                f"'{run}' is not the run.json of a saved fit (no method recorded); refit with "
                "--save-artifacts"
            )
        version = meta.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ArtifactMismatchError(
                f"'{folder}' was saved by a newer imagic-kit (fit format {version}); upgrade "
                "imagic-kit, or refit with --save-artifacts"
            )
        if version == 1:  # saved by imagic-kit 0.1 before run.json listed the files
            warnings.warn(
                f"'{folder}' was saved by an earlier imagic-kit without file checksums: its files "
                "are read unchecked (the tensors are still checked); save it again to add them",
                stacklevel=2,
            )
            meta["files"] = {
                n: {"sha256": _sha256(folder / n)} for n in FIT_FILES[1:] if (folder / n).is_file()
            }
        elif version != FORMAT_VERSION:
            raise ArtifactMismatchError(
                f"'{run}' has no known fit format ({version!r}); refit with --save-artifacts"
            )
        listed = meta.get("files")
        if (
            not isinstance(listed, dict)
            or not set(listed) <= set(FIT_FILES[1:])
            or not all(
                isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in listed.values()
            )
        ):
            raise ArtifactMismatchError(
                f"'{run}' does not list its files as a saved fit does; refit with --save-artifacts"
            )
        fit = cls(meta=meta)
        for name in (EMBEDDINGS, LORA, UNET):
            path = folder / name
            if name not in listed:
                if path.exists():
                    raise ArtifactMismatchError(
                        f"'{path}' is not listed in its run.json: the folder mixes two fits; "
                        "refit with --save-artifacts"
                    )
                continue
            if not path.is_file():
                raise ArtifactMismatchError(
                    f"the artifacts in '{folder}' lack {name}, which run.json lists; the folder "
                    "is incomplete: refit with --save-artifacts"
                )
            if _sha256(path) != listed[name]["sha256"]:
                raise ArtifactMismatchError(
                    f"'{path}' is not the file its run.json was saved with (damaged or "
                    "replaced); refit with --save-artifacts"
                )
            try:
                if name == LORA:
                    fit.lora, fit.lora_spec = read_lora(path)
                    tensors = fit.lora
                else:
                    tensors = load_file(str(path))
                    if name == EMBEDDINGS:
                        fit.tensors = tensors
                    else:
                        fit.unet_state = tensors
            except Exception as e:  # safetensors header errors, bad LoRA metadata, I/O errors
                raise ArtifactMismatchError(
                    f"'{path}' cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                    "refit with --save-artifacts"
                ) from None
            bad = [
                k
                for k, v in tensors.items()
                if v.is_floating_point() and not torch.isfinite(v).all()
            ]
            if bad:
                raise ArtifactMismatchError(
                    f"'{path}' holds NaN or infinite values ({', '.join(bad[:3])}); refit with "
                    "--save-artifacts"
                )
        return fit

    def mismatch(self, expected: dict[str, Any]) -> str | None:
        """The first key whose value differs from ``expected``, with the values
        (``"key differs: ..."``), or None when everything matches."""
        for key, want in expected.items():
            have = self.meta.get(key)
            if _norm(have) != _norm(want):
                if isinstance(want, dict) and isinstance(have, dict):
                    diff = [
                        k
                        for k in sorted(set(want) | set(have))
                        if _norm(want.get(k)) != _norm(have.get(k))
                    ]
                    detail = ", ".join(
                        f"{k}: saved {have.get(k)!r}, now {want.get(k)!r}" for k in diff[:4]
                    )
                else:
                    detail = f"saved {have!r}, now {want!r}"
                return f"{key} differs: {detail}"
        return None

    def check_compatible(self, expected: dict[str, Any]) -> None:
        """Raise :class:`ArtifactMismatchError` naming the first key whose value differs."""
        why = self.mismatch(expected)
        if why is not None:
            raise ArtifactMismatchError(
                f"the artifacts do not match this edit ({why}); refit (drop --artifacts) or "
                "change it back"
            )


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def _cpu(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in d.items()}


def check_save_target(folder: str | os.PathLike) -> Path:
    """``folder`` can take a saved fit: it is new, empty, or holds a previous fit (which a save
    replaces as a whole). A folder holding anything else is refused: saving would delete it."""
    folder = check_writable_folder(Path(folder).resolve(), "the artifacts folder")
    check_writable_folder(folder.parent, "the folder of the artifacts folder")  # a save renames
    if folder.is_dir():
        other = sorted(
            p.name
            for p in folder.iterdir()
            if p.name not in FIT_FILES and not p.name.startswith(".") and p.name not in OS_FILES
        )
        if other:
            raise ConfigError(
                f"the artifacts folder '{folder}' holds files that are not a saved fit "
                f"({', '.join(other[:3])}); saving would replace them: choose a new or empty folder"
            )
    return folder


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(new: Path, folder: Path) -> None:
    """Put ``new`` in the place of ``folder`` (which may not exist): the old one is moved aside,
    the new one renamed into place, the old one deleted."""
    if not folder.exists():
        os.replace(new, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.rmdir(old)
    try:
        os.replace(folder, old)
    except OSError:  # a mount point or otherwise busy: replace the files inside it instead
        for p in folder.iterdir():
            if p.name in FIT_FILES and not (new / p.name).exists():
                p.unlink()
        run = new / "run.json"
        for p in sorted(new.iterdir(), key=lambda p: p == run):  # run.json, the listing, last
            os.replace(p, folder / p.name)
        shutil.rmtree(new, ignore_errors=True)
        return
    try:
        os.replace(new, folder)
    except BaseException:
        os.replace(old, folder)  # put the previous fit back
        raise
    shutil.rmtree(old, ignore_errors=True)
