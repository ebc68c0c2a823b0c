"""How a pipeline handles its modules as diffusers does (``.to()``, model CPU offload,
``save_pretrained``), with the toolkit's rules: the VAE stays float32, tensors are made on the
device the models run on, and kept fits are dropped when the model moves."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import ConfigError


class ModuleHandling:
    """The module handling of :class:`~imagic_kit.pipelines.EditPipeline` (a mixin before
    ``DiffusionPipeline``: it calls diffusers' own offload and hook handling)."""

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Move the modules to a device and/or dtype, as ``DiffusionPipeline.to``; the VAE stays
        float32. Offload hooks are removed first; kept fits are dropped when anything moves."""
        from ..models import place, resolve_dtype

        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        dtype = kwargs.pop("torch_dtype", None) or dtype
        kwargs.pop("silence_dtype_warnings", None)
        for a in args:
            if isinstance(a, torch.dtype):
                dtype = a
            elif a is not None:
                device = a
        if kwargs:
            raise TypeError(f"to() got unexpected arguments: {', '.join(kwargs)}")
        if getattr(self, "_all_hooks", None):
            self.remove_all_hooks()
        bb = self.backbone
        before = (next(bb.unet.parameters()).device, bb.dtype)
        dev = torch.device(device) if device is not None else before[0]
        place(bb, dev, resolve_dtype(dtype, dev) if dtype is not None else bb.dtype)
        if (next(bb.unet.parameters()).device, bb.dtype) != before:
            self.fits.clear()
        return self

    def enable_model_cpu_offload(
        self, gpu_id: int | None = None, device: torch.device | str | None = None
    ) -> None:
        """Keep each model on the CPU until it runs (diffusers' model offload: accelerate hooks);
        tensors are made on the device the models run on."""
        super().enable_model_cpu_offload(gpu_id=gpu_id, device=device)
        self.backbone.execution_device = torch.device(self._offload_device)
        self.backbone.forget_cached()

    def enable_sequential_cpu_offload(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigError(
            "sequential CPU offload is not supported: fitting trains through the UNet, which it "
            "keeps on the meta device; use enable_model_cpu_offload()"
        )

    def remove_all_hooks(self) -> None:
        super().remove_all_hooks()
        if hasattr(self, "backbone"):
            self.backbone.execution_device = None
            self.backbone.forget_cached()

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write the model as a stock diffusers folder (``StableDiffusionPipeline``, or
        ``StableDiffusionImageVariationPipeline`` for an image-conditioned model), which
        ``from_pretrained`` of diffusers and of this toolkit load. Fits are saved with
        ``Fit.save`` (``fit.save(folder)``), not here."""
        from ..models import to_pipeline

        to_pipeline(self.backbone).save_pretrained(save_directory, **kwargs)

    # --- the calls -----------------------------------------------------------------------------
