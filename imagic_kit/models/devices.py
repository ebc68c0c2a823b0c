"""Device and dtype, chosen once at the entry: CUDA when available, float16 there and float32
on the CPU; the VAE stays float32 and every module is frozen (``place``).
"""

from __future__ import annotations

import torch

from ..backbone import Backbone
from ..errors import ConfigError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"device {device!r} is not a torch device; use cpu, cuda, cuda:1 or mps"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r}: CUDA is not available on this machine; use --device cpu"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            "use cuda:0 .. or cpu"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {device!r}: MPS is not available on this machine; use --device cpu"
        )
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ConfigError(
                f"dtype {dtype} is not a model dtype; use float32, float16 or bfloat16"
            )
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; choose one of: float32, float16, bfloat16")
    return DTYPES[dtype]


def place(bb: Backbone, device: torch.device, dtype: torch.dtype) -> Backbone:
    """Move to device/dtype (VAE kept float32) and freeze every module."""
    for name, m in bb.modules().items():
        want = torch.float32 if name == "vae" else dtype
        m.to(device=device)
        if next(m.parameters()).dtype != want:
            m.to(dtype=want)
    bb.forget_cached()
    return bb.freeze()
