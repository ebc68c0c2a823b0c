"""Where models come from: a backbone preset or embedded alias, a local diffusers folder, a hub id,
or an existing diffusers pipeline object. All end in the same :class:`Backbone`.

Backbone presets are ``configs/backbones/<name>.yaml``: either ``model: <hub id or folder>`` (with
optional ``revision``), or ``build:`` with component configs from which a random-weight model is
made (tiny models for tests, and the SD 1.5 architecture for timing without weights).

Device and dtype are chosen here, once: ``device=None`` picks CUDA when available, else the CPU;
``dtype=None`` is float16 on CUDA and float32 elsewhere. The VAE stays float32 (fp16 VAEs give
black or NaN images on several checkpoints); trainable tensors are always float32 (optim.py).

The rooms: ``devices`` (device and dtype), ``hub`` (the hub, local folders, offline),
``components`` (a backbone from components), ``random`` (random-weight models from config),
``embedded`` (the embedded model), ``export`` (back to stock diffusers pipelines).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from ..backbone import Backbone
from ..config import configs_dir
from ..errors import ConfigError, ModelNotAvailableError
from ..paths import looks_like_hub_id
from ..progress import quiet_loading
from .components import COMPONENTS, EDITING_SCHEDULER, editing_scheduler, from_components
from .devices import DTYPES, place, resolve_device, resolve_dtype
from .embedded import EMBEDDED_DIR, embedded_path, load_embedded, variations_pipeline
from .export import save_pipeline, to_pipeline
from .hub import hub_reachable, load_pretrained, resolve_offline
from .random import build_from_config

__all__ = [
    "COMPONENTS",
    "DTYPES",
    "EDITING_SCHEDULER",
    "EMBEDDED_DIR",
    "backbone_presets",
    "build_from_config",
    "editing_scheduler",
    "embedded_path",
    "from_components",
    "hub_reachable",
    "load_backbone",
    "load_embedded",
    "place",
    "read_preset",
    "resolve_device",
    "resolve_dtype",
    "save_pipeline",
    "to_pipeline",
    "variations_pipeline",
]

logger = logging.getLogger(__name__)


def backbone_presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted((configs_dir() / "backbones").glob("*.yaml"))}


def read_preset(name: str) -> dict[str, Any]:
    return yaml.safe_load(backbone_presets()[name].read_text()) or {}


def load_backbone(
    model: Any = "tiny-shapes",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
) -> Backbone:
    """Load a backbone from a preset name, a local folder, a hub id, or a diffusers pipeline.

    Raises :class:`ModelNotAvailableError` naming the model and how to get it when it is neither
    local nor downloadable. An explicit ``IMAGIC_KIT_NUM_THREADS`` is applied here too (the CLI
    applies the whole thread policy), so parallel Python jobs do not oversubscribe the CPU.
    """
    if os.environ.get("IMAGIC_KIT_NUM_THREADS"):
        from ..threads import configure_threads

        configure_threads()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dev.type == "cpu" and dt != torch.float32:
        warnings.warn(
            f"{str(dt).removeprefix('torch.')} on the CPU is several times slower than float32 and "
            "saves nothing worth it; leave the dtype out (float32 is the CPU default)",
            stacklevel=2,
        )
    hub_id = _hub_id(model)
    if hub_id is not None:  # before the model stack loads: offline, fail in seconds
        local_files_only = resolve_offline(hub_id, revision, local_files_only)
    with quiet_loading():
        return place(_load(model, revision, local_files_only, dt), dev, dt)


def _load(
    model: Any, revision: str | None, local_files_only: bool | None, dt: torch.dtype
) -> Backbone:
    if hasattr(model, "components") and not isinstance(model, str | os.PathLike):
        bb = from_components(
            dict(model.components), model_id=getattr(model, "name_or_path", None) or "pipeline"
        )
    elif isinstance(model, str | os.PathLike) and Path(model).is_dir():
        bb = load_pretrained(
            str(Path(model).resolve()), revision=None, local_files_only=True, dtype=dt
        )
    elif isinstance(model, str) and model in backbone_presets():
        spec = read_preset(model)
        if "build" in spec:
            bb = build_from_config(spec["build"], model_id=model)
        elif "embedded" in spec:
            bb = load_embedded(spec["embedded"], dtype=dt)
        elif "model" in spec:
            bb = load_pretrained(
                spec["model"],
                revision=revision or spec.get("revision"),
                local_files_only=local_files_only,
                dtype=dt,
            )
            bb.model_id = model if spec["model"] == model else f"{model} ({spec['model']})"
        else:
            raise ConfigError(f"backbone preset {model!r} has neither 'model' nor 'build'")
        bb.timing_only = bool(spec.get("timing_only", False))
    elif isinstance(model, str) and looks_like_hub_id(model):
        bb = load_pretrained(model, revision=revision, local_files_only=local_files_only, dtype=dt)
    else:
        raise ModelNotAvailableError(
            f"model {model!r} is not a preset ({', '.join(backbone_presets())}), a local diffusers "
            "folder, or a hub id like 'org/name'; check the spelling or the path"
        )
    return bb


def _hub_id(model: Any) -> str | None:
    """The hub id that ``model`` (a preset name or a hub id) would download, else None."""
    if not isinstance(model, str) or Path(model).is_dir():
        return None
    if model in backbone_presets():
        target = read_preset(model).get("model")
        return target if isinstance(target, str) and not Path(target).is_dir() else None
    return model if looks_like_hub_id(model) else None
