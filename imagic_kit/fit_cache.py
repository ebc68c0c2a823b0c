"""Fits in memory: :class:`FitCache`, the one place the toolkit keeps them, keyed by
:func:`fit_key` (what a fit depends on), and :func:`reusable`, the check a fit passes before it is
used again (the check a saved fit passes too)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

from .artifacts import Fit
from .errors import ConfigError

logger = logging.getLogger(__name__)


class FitCache:
    """The fits kept in memory, bounded: the least recently used goes first. Thread-safe.

    Keys are :func:`fit_key` strings. ``per_seed=True`` keeps a fit only for edits of the seed it
    was made with (batch runs: an output must not depend on which row ran first)."""

    def __init__(self, size: int = 4, *, per_seed: bool = False):
        if size < 1:
            raise ValueError("a FitCache holds at least one fit")
        self.size, self.per_seed = size, per_seed
        self._items: OrderedDict[str, Fit] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Fit | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: str, fit: Fit) -> None:
        with self._lock:
            self._items[key] = fit
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def fit_key(expected: dict[str, Any], seed: int | None = None, backbone: Any = None) -> str:
    """The key a fit is kept under in a :class:`FitCache`: what it depends on (the key a saved fit
    is checked with), the device and dtype of the model it was made on, and its seed for a
    per-seed cache; as JSON."""
    key = dict(expected)
    if backbone is not None:
        key.update(device=str(backbone.device), dtype=str(backbone.dtype))
    if seed is not None:
        key["fit_seed"] = seed
    return json.dumps(key, sort_keys=True, default=str)


def reusable(fit: Fit, expected: dict[str, Any], soft: list[str], method: str) -> Fit | None:
    """``fit`` when it matches ``expected``; None (refit, with a warning) when only the ``soft``
    keys differ (facts of the edit such as FastEdit's timestep range); otherwise the mismatch
    error."""
    fit.check_compatible({k: v for k, v in expected.items() if k not in soft})
    why = fit.mismatch({k: expected[k] for k in soft})
    if why is not None:
        logger.warning("%s: the saved fit was made for other inputs (%s); refitting", method, why)
        return None
    return fit


def load_fit(artifacts: str | os.PathLike | Fit) -> Fit:
    """A saved fit (folder) read, or a :class:`Fit` as it is."""
    if isinstance(artifacts, Fit):
        return artifacts
    if not isinstance(artifacts, str | os.PathLike):
        raise ConfigError(
            f"artifacts must be a folder path or a Fit, got {type(artifacts).__name__}"
        )
    return Fit.load(artifacts)
