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

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import ArtifactMismatchError
from .imaging import _default_mode
from .lora import LoraSpec, read_lora, save_lora

FORMAT_VERSION = 1


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
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, **self.meta}
        if self.tensors:
            _atomic(
                folder / "embeddings.safetensors", lambda p: save_file(_cpu(self.tensors), str(p))
            )
        if self.lora is not None:
            assert self.lora_spec is not None
            _atomic(
                folder / "unet_lora.safetensors", lambda p: save_lora(p, self.lora, self.lora_spec)
            )
        if self.unet_state is not None:
            _atomic(folder / "unet.safetensors", lambda p: save_file(_cpu(self.unet_state), str(p)))
        text = json.dumps(meta, indent=2, sort_keys=True, default=str)
        _atomic(folder / "run.json", lambda p: Path(p).write_text(text))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Fit:
        folder = Path(folder)
        run = folder / "run.json"
        if not run.is_file():
            raise ArtifactMismatchError(
                f"artifacts folder '{folder}' has no run.json; pass a folder written by --save-artifacts"
            )
        try:
            meta = json.loads(run.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactMismatchError(
                f"'{run}' is not valid JSON ({e}); refit with --save-artifacts"
            ) from None
        fit = cls(meta=meta)
        if (p := folder / "embeddings.safetensors").is_file():
            fit.tensors = load_file(str(p))
        if (p := folder / "unet_lora.safetensors").is_file():
            fit.lora, fit.lora_spec = read_lora(p)
        if (p := folder / "unet.safetensors").is_file():
            fit.unet_state = load_file(str(p))
        return fit

    def check_compatible(self, expected: dict[str, Any]) -> None:
        """Raise :class:`ArtifactMismatchError` naming the first key whose value differs."""
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
                raise ArtifactMismatchError(
                    f"the artifacts do not match this edit ({key} differs: {detail}); "
                    "refit (drop --artifacts) or change it back"
                )


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def _cpu(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in d.items()}


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
