"""Model sources: preset, local diffusers folder, pipeline object, hub id offline."""

from __future__ import annotations

import time
import warnings

import pytest
import torch
from PIL import Image

from imagic_kit import edit, load_backbone
from imagic_kit.errors import (
    ConfigError,
    ModelNotAvailableError,
)
from imagic_kit.models import backbone_presets, save_pipeline


def _out(bb):
    x = bb.randn(bb.latent_shape(1), torch.Generator().manual_seed(0))
    return bb.model_output(x, 300, bb.encode_prompt("a red circle"))


def test_presets_exist():
    presets = backbone_presets()
    for name in (
        "tiny-random",
        "tiny-random-v",
        "tiny-random-variations",
        "sd15",
        "sd21",
        "sd-image-variations",
    ):
        assert name in presets


def test_built_model_is_deterministic(tiny):
    again = load_backbone("tiny-random", device="cpu")
    torch.testing.assert_close(_out(again), _out(tiny))


def test_local_folder_and_pipeline_object(tiny, tmp_path):
    from diffusers import StableDiffusionPipeline

    folder = save_pipeline(tiny, tmp_path / "model")
    bb = load_backbone(folder, device="cpu")
    assert bb.model_id == str(folder.resolve())
    torch.testing.assert_close(_out(bb), _out(tiny))
    assert (
        bb.scheduler.config.clip_sample is False and bb.scheduler.config.set_alpha_to_one is False
    )
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    torch.testing.assert_close(_out(load_backbone(pipe, device="cpu")), _out(tiny))


def test_v_prediction_is_kept_from_folder(tiny_v, tmp_path):
    bb = load_backbone(save_pipeline(tiny_v, tmp_path / "v"), device="cpu")
    assert bb.prediction_type == "v_prediction"


def test_missing_hub_model_offline_is_one_clear_error():
    t = time.time()
    with pytest.raises(
        ModelNotAvailableError,
        match=r"not available offline.*hf download nobody/no-such-model",
    ):
        load_backbone("nobody/no-such-model", device="cpu")
    assert time.time() - t < 30


def test_preset_for_hub_model_offline():
    with pytest.raises(ModelNotAvailableError, match="stable-diffusion-v1-5"):
        load_backbone("sd15", device="cpu")


def test_bad_model_names(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="not a preset"):
        load_backbone("tiny-randum")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="no model_index.json"):
        load_backbone(tmp_path / "empty")


def test_bad_device_and_dtype():
    with pytest.raises(ConfigError, match="CUDA is not available|not a torch device"):
        load_backbone("tiny-random", device="cuda" if not torch.cuda.is_available() else "nonsense")
    with pytest.raises(ConfigError, match="dtype 'float8' is unknown"):
        load_backbone("tiny-random", dtype="float8")


def test_half_precision_backbone_keeps_vae_float32():
    bb = load_backbone("tiny-random", device="cpu", dtype="bfloat16")
    assert bb.dtype == torch.bfloat16 and bb.vae.dtype == torch.float32
    assert torch.isfinite(_out(bb)).all()


def test_image_conditioned_backbone_builds_saves_and_samples(tmp_path):
    from diffusers import StableDiffusionImageVariationPipeline

    from imagic_kit.sampling import ddim_sample

    bb = load_backbone("tiny-random-variations", device="cpu")
    assert bb.text_encoder is None and bb.image_encoder is not None
    emb = bb.encode_image_embedding([Image.new("RGB", (64, 64), (220, 40, 40))])
    assert emb.shape == (1, 1, 32)
    assert torch.equal(bb.uncond_embedding(), torch.zeros(1, 1, 32))
    x = bb.randn(bb.latent_shape(1), torch.Generator().manual_seed(0))
    out = ddim_sample(bb, x, emb, num_inference_steps=4, guidance_scale=3.0)
    assert torch.isfinite(out).all()
    folder = save_pipeline(bb, tmp_path / "var")
    StableDiffusionImageVariationPipeline.from_pretrained(str(folder))  # stock class loads it
    again = load_backbone(folder, device="cpu")
    torch.testing.assert_close(
        again.encode_image_embedding([Image.new("RGB", (64, 64))]),
        bb.encode_image_embedding([Image.new("RGB", (64, 64))]),
    )


def test_text_method_on_image_model_is_refused(tmp_path, scene_path):
    from imagic_kit.errors import ConfigError

    bb = load_backbone("tiny-random-variations", device="cpu")
    with pytest.raises(ConfigError, match="needs a model with text_encoder"):
        edit(bb, str(scene_path), "a blue circle", method="sdedit")


@pytest.mark.parametrize("preset", ["sd15-random", "sd-image-variations-random"])
def test_timing_presets_have_the_real_architecture(preset):
    """Built on the meta device (no memory): parameter counts match the published models."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from imagic_kit.models import read_preset

    build = read_preset(preset)["build"]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**build["unet"])
        vae = AutoencoderKL(**build["vae"])
        if "text_encoder" in build:
            cond = CLIPTextModel(
                CLIPTextConfig(max_position_embeddings=77, **build["text_encoder"])
            )
            expected = 123.06e6
        else:
            cond = CLIPVisionModelWithProjection(CLIPVisionConfig(**build["image_encoder"]))
            expected = 303.97e6
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unet) == pytest.approx(859.52e6, rel=1e-3)
    assert count(vae) == pytest.approx(83.65e6, rel=1e-3)
    assert count(cond) == pytest.approx(expected, rel=1e-3)


def test_hub_id_loads_from_the_local_cache_offline(tiny, tmp_path, monkeypatch):
    """A hub id whose snapshot is in the Hugging Face cache loads with the hub unreachable."""
    import shutil

    cache = tmp_path / "hub"
    snap = (
        cache
        / "models--someorg--tiny-sd"
        / "snapshots"
        / "0123456789abcdef0123456789abcdef01234567"
    )
    save_pipeline(tiny, tmp_path / "src")
    shutil.copytree(tmp_path / "src", snap)
    (cache / "models--someorg--tiny-sd" / "refs").mkdir(parents=True)
    (cache / "models--someorg--tiny-sd" / "refs" / "main").write_text(snap.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    bb = load_backbone("someorg/tiny-sd", device="cpu")
    assert bb.model_id == "someorg/tiny-sd"
    torch.testing.assert_close(_out(bb), _out(tiny))


def test_load_backbone_applies_an_explicit_thread_count(monkeypatch):
    import torch

    from imagic_kit import threads
    from imagic_kit.models import load_backbone

    before = torch.get_num_threads()
    monkeypatch.setenv("IMAGIC_KIT_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "_configured", None)
    try:
        load_backbone("tiny-random", device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        threads._configured = before


def test_pickle_weights_load_only_with_a_warning(tiny, tmp_path):
    from imagic_kit.models import load_backbone, to_pipeline

    to_pipeline(tiny).save_pretrained(str(tmp_path / "bin"), safe_serialization=False)
    assert (tmp_path / "bin" / "unet" / "diffusion_pytorch_model.bin").is_file()
    with pytest.warns(UserWarning, match=r"no safetensors weights.*pickle"):
        bb = load_backbone(str(tmp_path / "bin"), device="cpu")
    assert bb.unet is not None
    to_pipeline(tiny).save_pretrained(str(tmp_path / "st"))

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_backbone(str(tmp_path / "st"), device="cpu")


def test_unreachable_hub_fails_at_once_with_the_copy_instructions(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc

    from imagic_kit import models
    from imagic_kit.models import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match=r"no connection to the hub.*--model DIR"):
        models.load_backbone("someorg/not-here", device="cpu")


def test_hub_probe_answers_false_for_a_closed_endpoint(monkeypatch):
    from imagic_kit.models import hub

    for v in hub._HUB_PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(hub, "_hub_answer", None)
    assert hub.hub_reachable(timeout=1.0) is False
    monkeypatch.setattr(hub, "_hub_answer", None)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub.hub_reachable() is True  # behind a proxy the hub is not probed
    monkeypatch.setattr(hub, "_hub_answer", None)


def test_half_precision_on_the_cpu_warns():
    from imagic_kit import load_backbone

    with pytest.warns(UserWarning, match="bfloat16 on the CPU is several times slower"):
        load_backbone("tiny-random", device="cpu", dtype="bfloat16")
