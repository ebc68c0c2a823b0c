"""The embedded tiny-shapes model: stock diffusers loads it, and it draws what it is asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imagic_kit.imaging import tensor_to_pil
from imagic_kit.models import embedded_path
from imagic_kit.sampling import ddim_sample
from imagic_kit.shapes import cleanliness, parse_caption, random_scenes, read, render


def card_guidance() -> float:
    card = json.loads((embedded_path("tiny-shapes").parent / "eval.json").read_text())
    return float(card["recommended"]["guidance_scale"])


def test_bundle_is_small_fp32_safetensors():
    root = embedded_path("tiny-shapes").parent
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert sum(p.stat().st_size for p in files) < 30 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    from safetensors import safe_open

    with safe_open(
        str(root / "text2img" / "unet" / "diffusion_pytorch_model.safetensors"), "pt"
    ) as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}


def test_each_weight_ships_once():
    """A link or a copy would put the same weights in the wheel twice (packaging follows links)."""
    import hashlib

    root = embedded_path("tiny-shapes").parent
    assert not [p for p in root.rglob("*") if p.is_symlink()]
    weights = sorted(root.rglob("*.safetensors"))
    digests = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in weights}
    assert len(digests) == len(weights) >= 5


def test_stock_diffusers_pipelines_load_and_run():
    from diffusers import StableDiffusionPipeline

    from imagic_kit.models import variations_pipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(embedded_path("tiny-shapes")))
    out = pipe("a red circle", height=64, width=64, num_inference_steps=2, output_type="np").images
    assert out.shape == (1, 64, 64, 3)
    var = variations_pipeline("tiny-shapes")
    img = render(random_scenes(1, 0)[0])[0]
    out = var(img, height=64, width=64, num_inference_steps=2, output_type="np").images
    assert out.shape == (1, 64, 64, 3)


def test_backbone_has_both_conditioners(shapes):
    assert (
        shapes.resolution == 64
        and shapes.text_encoder is not None
        and shapes.image_encoder is not None
    )
    assert shapes.model_id == "tiny-shapes" and shapes.clip_path
    with pytest.warns(UserWarning, match="zebra"):
        shapes.encode_prompt("a zebra")


PROMPTS = [
    "a red circle on a white background",
    "a blue square on a black background",
    "a yellow triangle on a gray background",
    "a green square",
]


def test_text_to_image_draws_the_prompt(shapes):
    """Shape, colour and background are read back for a fixed seed."""
    g = torch.Generator().manual_seed(0)
    x = shapes.randn(shapes.latent_shape(len(PROMPTS)), g)
    z = ddim_sample(
        shapes,
        x,
        shapes.encode_prompt(PROMPTS),
        num_inference_steps=25,
        guidance_scale=card_guidance(),
    )
    hits = 0
    for prompt, img in zip(PROMPTS, tensor_to_pil(shapes.decode_latents(z))):
        want, got = parse_caption(prompt), read(img).attributes()
        hits += all(got[k] == want[k] for k in ("shape", "colour", "background"))
    assert hits >= len(PROMPTS) - 1, hits


def test_vae_round_trip_is_faithful(shapes):
    scenes = random_scenes(8, 31337)
    from imagic_kit.imaging import pil_to_tensor

    x = torch.cat([pil_to_tensor(render(s)[0]) for s in scenes])
    y = shapes.decode_latents(shapes.encode_latents(x))
    a = ((x + 1) * 127.5).round()
    b = ((y + 1) * 127.5).round()
    psnr = 10 * np.log10(255**2 / float(((a - b) ** 2).mean()))
    assert psnr > 28, psnr


def test_the_decoder_draws_objects_the_oracle_calls_clean(shapes):
    """The cleanliness bars sit above what the model's own decoder can draw: VAE round trips of
    the quick suite's inputs are clean."""
    from imagic_kit.bench.suites import make_suite, source_image
    from imagic_kit.imaging import pil_to_tensor

    edits = make_suite("quick")["edits"]
    x = torch.cat([pil_to_tensor(source_image(e)) for e in edits])
    with torch.no_grad():
        y = shapes.decode_latents(shapes.encode_latents(x))
    for image in tensor_to_pil(y):
        c = cleanliness(image)
        assert c is not None and c.clean, c
