"""LoRA on the UNet, backed by peft (Hu et al. 2021): add, extract, apply, export.

The exported file is what diffusers' ``load_lora_weights`` reads: peft-format keys prefixed with
``unet.``, saved as safetensors, with the LoRA config in the safetensors metadata so rank and alpha
travel with the weights.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

#: Attention projections of every attention block (the usual Stable Diffusion LoRA targets).
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: The ResNet blocks' two 3x3 convolutions only, Imagic's default: with no adapter on the attention
#: projections the cross-attention reads the prompt as pretrained, while the convolutions reach the
#: top resolution and keep the input's layout and texture
#: (docs/methods/imagic.md#lora-on-the-resnet-convolutions).
CONV_TARGETS = ("conv1", "conv2")
ADAPTER = "imagic_kit"


@dataclass
class LoraSpec:
    rank: int = 4
    alpha: float = 4.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    init: str = "gaussian"

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            init_lora_weights=self.init,
            target_modules=list(self.target_modules),
        )


def check_targets(unet: torch.nn.Module, targets: list[str]) -> None:
    """Every LoRA target names modules of ``unet`` (peft matches a target against the end of each
    module's name); raises :class:`~imagic_kit.errors.ConfigError` naming those that match none."""
    from .errors import ConfigError

    names = [n for n, _ in unet.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing or not targets:
        raise ConfigError(
            f"lora_targets {', '.join(missing) or '(none)'} match no module of this UNet; use e.g. "
            "conv1,conv2 (ResNet convolutions) or to_q,to_k,to_v,to_out.0 (attention)"
        )


def add_lora(
    unet: torch.nn.Module,
    spec: LoraSpec,
    adapter_name: str = ADAPTER,
    generator: torch.Generator | None = None,
) -> list[torch.nn.Parameter]:
    """Freeze the UNet, inject a LoRA adapter, return its parameters (float32, trainable).

    The down-projections are re-drawn from ``generator`` (a CPU generator; seed 0 when None) with
    peft's "gaussian" init, N(0, 1/rank), and the up-projections are zero: the adapter starts as
    the identity and the same seed gives the same adapter on any device.
    """
    unet.requires_grad_(False)
    unet.add_adapter(spec.peft_config(), adapter_name=adapter_name)
    if hasattr(unet, "set_adapter"):
        unet.set_adapter(adapter_name)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    params = []
    for name, p in unet.named_parameters():
        if "lora_" in name and f".{adapter_name}." in name:
            p.data = p.data.float()
            with torch.no_grad():
                if "lora_A" in name:
                    p.copy_(torch.randn(p.shape, generator=g) / spec.rank)
                elif "lora_B" in name:
                    p.zero_()
            p.requires_grad_(True)
            params.append(p)
    if not params:
        raise ValueError(f"LoRA targets {spec.target_modules} matched no module of the UNet")
    return params


def lora_state_dict(unet: torch.nn.Module, adapter_name: str = ADAPTER) -> dict[str, torch.Tensor]:
    """The adapter's weights in peft format (keys without the adapter name), float32, on the CPU."""
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    return {k: v.detach().float().cpu().contiguous() for k, v in sd.items()}


def remove_lora(unet: torch.nn.Module, adapter_name: str = ADAPTER) -> None:
    """Delete the adapter; when no other adapter is left, restore the plain module structure.

    (Deleting alone leaves peft's wrapper layers in place, which renames the UNet's weights on
    ``save_pretrained``.)
    """
    unet.delete_adapters(adapter_name)
    if not getattr(unet, "peft_config", None):
        unet.unload_lora()


def load_lora(
    unet: torch.nn.Module,
    state: dict[str, torch.Tensor],
    spec: LoraSpec,
    adapter_name: str = ADAPTER,
) -> None:
    """Inject an adapter and set its weights from :func:`lora_state_dict` output."""
    from peft import set_peft_model_state_dict

    add_lora(unet, spec, adapter_name)
    result = set_peft_model_state_dict(unet, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA weights do not fit this UNet: unexpected keys {unexpected[:3]}...")
    unet.requires_grad_(False)


@contextlib.contextmanager
def lora_training(unet: torch.nn.Module, spec: LoraSpec, generator: torch.Generator | None = None):
    """A fresh trainable adapter for a ``with`` block: yields its parameters, removes it after
    (read :func:`lora_state_dict` inside the block)."""
    params = add_lora(unet, spec, generator=generator)
    try:
        yield params
    finally:
        remove_lora(unet)


@contextlib.contextmanager
def lora_applied(
    unet: torch.nn.Module, state: dict[str, torch.Tensor] | None, spec: LoraSpec | None
):
    """Apply a saved LoRA for the duration of a ``with`` block; yields ``set_strength(s)``, which
    rescales it (``s`` times the fitted update; 1 at the start). A no-op when ``state`` is None.

    The adapter is merged into the weights it adapts, ``W = W0 + s * scale * B A``, and peft's
    adapter branch is switched off: sampling then runs the UNet at the cost of the plain model, not
    of the model plus the adapter's branch (docs/methods/imagic.md#speed-where-the-time-goes-and-shorter-recipes). The original
    tensors are kept and put back afterwards, so the base weights come back bit for bit; the merged
    copies cost one more copy of the adapted modules' weights while the block runs.
    """
    if state is None:
        yield lambda strength: None
        return
    assert spec is not None
    load_lora(unet, state, spec)
    try:
        with _merged(unet) as set_strength:
            yield set_strength
    finally:
        remove_lora(unet)


@contextlib.contextmanager
def _merged(unet: torch.nn.Module, adapter_name: str = ADAPTER):
    from peft.tuners.lora import LoraLayer

    layers = [m for m in unet.modules() if isinstance(m, LoraLayer) and adapter_name in m.lora_A]
    bases = [m.get_base_layer() for m in layers]
    originals = [b.weight.data for b in bases]

    @torch.no_grad()
    def set_strength(strength: float) -> None:
        for m, base, w0 in zip(layers, bases, originals):
            delta = m.get_delta_weight(adapter_name)  # scale * B A, shaped like the weight
            base.weight.data = w0 + (strength * delta).to(w0.device, w0.dtype)

    set_strength(1.0)
    unet.disable_adapters()
    try:
        yield set_strength
    finally:
        for base, w0 in zip(bases, originals):
            base.weight.data = w0
        unet.enable_adapters()


def save_lora(path: str | Path, state: dict[str, torch.Tensor], spec: LoraSpec) -> Path:
    """Write ``unet_lora.safetensors``-style file that ``pipe.load_lora_weights(dir, weight_name=...)`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"unet.{k}": v for k, v in state.items()}
    meta = {"format": "pt", "imagic_kit_lora": json.dumps(asdict(spec))}
    save_file(tensors, str(path), metadata=meta)
    return path


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], LoraSpec]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    spec = (
        LoraSpec(**json.loads(meta["imagic_kit_lora"])) if "imagic_kit_lora" in meta else LoraSpec()
    )
    tensors = load_file(str(path))
    state = {k.removeprefix("unet."): v for k, v in tensors.items()}
    return state, spec
