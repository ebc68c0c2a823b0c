"""Models from the Hugging Face hub or a local diffusers folder, and the offline handling: a hub
id is resolved before the model stack loads, so that an unreachable hub fails in seconds with
one line naming the model and how to bring it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..backbone import Backbone
from ..errors import ModelNotAvailableError
from .components import from_components

logger = logging.getLogger(__name__)


def resolve_offline(model: str, revision: str | None, local_files_only: bool | None) -> bool:
    """Whether to read ``model`` from the local cache only: when asked (``HF_HUB_OFFLINE``) or
    when the hub cannot be reached. Offline, a model missing from the cache fails here, at once,
    instead of after a minute of connection retries."""
    if local_files_only is None:
        local_files_only = env_offline()
    if local_files_only or Path(model).is_dir() or hub_reachable():
        return bool(local_files_only)
    try:
        _model_index(model, revision, True)
    except ModelNotAvailableError:
        raise not_available(model, ConnectionError("no connection to the hub")) from None
    return True


def env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")


def load_pretrained(
    model: str, *, revision: str | None, local_files_only: bool | None, dtype: torch.dtype
) -> Backbone:
    if local_files_only is None:  # a hub id was resolved by load_backbone's resolve_offline already
        local_files_only = env_offline()
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": local_files_only}
    if revision:
        kwargs["revision"] = revision
    try:
        index = _model_index(model, revision, local_files_only)
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = _load_preferring_safetensors(DiffusionPipeline, model, kwargs)
    except ModelNotAvailableError:
        raise
    except (OSError, ValueError, EnvironmentError) as e:  # noqa: UP024 - hub errors subclass OSError
        raise not_available(model, e) from None
    except Exception as e:  # connection errors from requests/httpx vary by version
        if "connect" in type(e).__name__.lower() or "offline" in str(e).lower():
            raise not_available(model, e) from None
        raise
    return from_components(dict(pipe.components), model_id=model, revision=revision)


_HUB_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub (``HF_ENDPOINT``) opens within ``timeout``
    seconds, name lookup included. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) the hub cannot
    be probed directly and counts as reachable. The answer is kept for the process."""
    global _hub_answer
    if _hub_answer is not None:
        return _hub_answer
    if any(os.environ.get(v) for v in _HUB_PROXY_VARS):
        _hub_answer = True
        return True
    import socket
    import threading
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    answer = [False]

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer[0] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # a name lookup can outlast any socket timeout
    t.start()
    t.join(timeout + 0.5)
    _hub_answer = answer[0]
    return _hub_answer


_hub_answer: bool | None = None


def _load_preferring_safetensors(pipeline_cls, model: str, kwargs: dict[str, Any]):
    """Load with safetensors weights only; when the model has none, say so and load its pickle
    (``.bin``) weights, which can run code when read: load those only from sources you trust."""
    try:
        return pipeline_cls.from_pretrained(model, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as e:
        if "safetensors" not in str(e).lower():
            raise
    warnings.warn(
        f"model {model!r} has no safetensors weights; loading its pickle (.bin) weights, which "
        "can run code when read: use them only from a source you trust (convert them with "
        "pipe.save_pretrained(DIR) to get safetensors)",
        stacklevel=3,
    )
    return pipeline_cls.from_pretrained(model, **kwargs)  # each part's safetensors, else .bin


def _model_index(model: str, revision: str | None, local_files_only: bool) -> dict[str, Any]:
    import json

    p = Path(model)
    if p.is_dir():
        f = p / "model_index.json"
        if not f.is_file():
            raise ModelNotAvailableError(
                f"folder '{model}' has no model_index.json; pass a diffusers pipeline folder (save_pretrained output)"
            )
        return json.loads(f.read_text())
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(
            model, "model_index.json", revision=revision, local_files_only=local_files_only
        )
    except Exception as e:
        raise not_available(model, e) from None
    return json.loads(Path(path).read_text())


def _first_sentence(err: Exception, limit: int = 160) -> str:
    """The first sentence of an exception's text, cut at a word boundary: a cause, not a wall."""
    text = (str(err).strip().splitlines() or [""])[0] or type(err).__name__
    text = text.split(". ")[0].rstrip(".")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


def not_available(model: str, err: Exception) -> ModelNotAvailableError:
    first = _first_sentence(err)
    if Path(model).exists():
        return ModelNotAvailableError(
            f"model folder '{model}' could not be loaded ({first}); check it is a complete diffusers folder"
        )
    return ModelNotAvailableError(
        f"model {model!r} is not available offline: it is not in the local Hugging Face cache and the hub "
        f"cannot be reached ({first}). On a machine with internet run `hf download {model}` "
        "(or pipe.save_pretrained(DIR)), copy the folder here and pass --model DIR"
    )
