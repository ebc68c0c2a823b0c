"""LoRA over peft: apply/remove, and the export that stock diffusers loads."""

from __future__ import annotations

import pytest
import torch

from imagic_kit.lora import (
    ADAPTER,
    CONV_TARGETS,
    DEFAULT_TARGETS,
    LoraSpec,
    add_lora,
    load_lora,
    lora_applied,
    lora_state_dict,
    read_lora,
    remove_lora,
    save_lora,
)


def _out(bb):
    g = torch.Generator().manual_seed(0)
    x = bb.randn(bb.latent_shape(1), g)
    return bb.model_output(x, 400, bb.encode_prompt("a red circle"))


def _trained_lora(bb, spec):
    params = add_lora(bb.unet, spec)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.2)
    state = lora_state_dict(bb.unet)
    with torch.no_grad():
        changed = _out(bb)
    remove_lora(bb.unet)
    return state, changed


def test_lora_targets_attention_and_is_removable(tiny):
    base = _out(tiny)
    spec = LoraSpec(rank=2, alpha=2)
    params = add_lora(tiny.unet, spec)
    names = [n for n, p in tiny.unet.named_parameters() if p.requires_grad]
    remove_lora(tiny.unet)
    assert params and all(p.dtype == torch.float32 for p in params)
    assert all("lora_" in n for n in names)
    assert any("to_q" in n for n in names) and any("to_out" in n for n in names)
    torch.testing.assert_close(_out(tiny), base)
    assert not any(p.requires_grad for p in tiny.unet.parameters())


def test_saved_lora_reapplies_exactly(tiny, tmp_path):
    spec = LoraSpec(rank=4, alpha=8)
    state, changed = _trained_lora(tiny, spec)
    save_lora(tmp_path / "unet_lora.safetensors", state, spec)
    state2, spec2 = read_lora(tmp_path / "unet_lora.safetensors")
    assert spec2 == spec
    with lora_applied(tiny.unet, state2, spec2):
        torch.testing.assert_close(_out(tiny), changed)
    assert not torch.allclose(_out(tiny), changed)


@pytest.mark.parametrize("targets", [DEFAULT_TARGETS, CONV_TARGETS], ids=["attention", "convs"])
def test_applied_lora_is_merged_and_rescaled_like_peft(tiny, targets):
    """lora_applied merges the adapter into the weights: the same output as peft's own adapter
    branch at strength 1 and after a rescale, and the base weights come back bit for bit."""
    spec = LoraSpec(rank=4, alpha=8, target_modules=list(targets))
    state, changed = _trained_lora(tiny, spec)
    base_weights = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    load_lora(tiny.unet, state, spec)  # peft's unmerged branch at half strength, the reference
    tiny.unet.set_adapters([ADAPTER], weights=[0.5])
    with torch.no_grad():
        half = _out(tiny)
    remove_lora(tiny.unet)
    assert not torch.allclose(half, changed)
    with lora_applied(tiny.unet, state, spec) as set_strength, torch.no_grad():
        from peft.tuners.lora import LoraLayer

        lora_layers = [m for m in tiny.unet.modules() if isinstance(m, LoraLayer)]
        assert lora_layers and all(m.disable_adapters for m in lora_layers)  # branch off: merged
        torch.testing.assert_close(_out(tiny), changed, atol=1e-5, rtol=1e-4)
        set_strength(0.5)
        torch.testing.assert_close(_out(tiny), half, atol=1e-5, rtol=1e-4)
    after = tiny.unet.state_dict()
    assert after.keys() == base_weights.keys()
    assert all(torch.equal(after[k], v) for k, v in base_weights.items())


@pytest.mark.parametrize("targets", [DEFAULT_TARGETS, CONV_TARGETS], ids=["attention", "convs"])
def test_export_loads_into_stock_diffusers_pipeline(tiny, tmp_path, targets):
    from imagic_kit.models import to_pipeline

    spec = LoraSpec(rank=4, alpha=4, target_modules=list(targets))
    state, changed = _trained_lora(tiny, spec)
    save_lora(tmp_path / "unet_lora.safetensors", state, spec)
    pipe = to_pipeline(tiny)
    pipe.load_lora_weights(
        str(tmp_path), weight_name="unet_lora.safetensors", adapter_name="exported"
    )
    try:
        torch.testing.assert_close(_out(tiny), changed, atol=1e-5, rtol=1e-4)
    finally:
        remove_lora(tiny.unet, "exported")
    assert not torch.allclose(_out(tiny), changed)


def test_removing_lora_restores_plain_weight_names(tiny):
    from imagic_kit import load_backbone

    before = set(load_backbone("tiny-random").unet.state_dict())
    assert set(tiny.unet.state_dict()) == before
    add_lora(tiny.unet, LoraSpec(rank=2, alpha=2))
    remove_lora(tiny.unet)
    assert set(tiny.unet.state_dict()) == before
