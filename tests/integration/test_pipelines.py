"""The pipelines: one class per registered method on one base, the diffusers calls, and one lifecycle
under the command line, ``edit()`` and the pipelines (the same pixels from each)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from test_methods_contract import QUICK

import imagic_kit
from imagic_kit import EditPipeline, edit
from imagic_kit.cli import main
from imagic_kit.errors import ArtifactMismatchError, ConfigError
from imagic_kit.fit_cache import FitCache, fit_key
from imagic_kit.pipelines import EditPipelineOutput, pipeline_class
from imagic_kit.registry import _REGISTRY, available_methods, get_method

PROMPT = "a blue circle"
SOURCE = "a red circle"


def px(path_or_image):
    img = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(img.convert("RGB"))


def model_for(method: str) -> tuple[str, str]:
    """(backbone preset, fixture name): FastEdit needs the embedded model's image encoder."""
    if "image_encoder" in get_method(method).requires:
        return "tiny-shapes", "shapes"
    return "tiny-random", "tiny_random"


def extra_for(method: str) -> dict:
    return {"source_prompt": SOURCE} if get_method(method).source_prompt != "unused" else {}


@pytest.mark.parametrize("method", available_methods())
def test_the_cli_edit_and_the_pipeline_give_the_same_pixels(method, scene_path, tmp_path, request):
    preset, fixture = model_for(method)
    bb = request.getfixturevalue(fixture)
    quick, extra = QUICK[method], extra_for(method)
    argv = ["edit", "--image", str(scene_path), "--prompt", PROMPT, "--method", method,
            "--model", preset, "--seed", "3", "-o", str(tmp_path / "cli.png"), "-q"]  # fmt: skip
    for k, v in quick.items():
        argv += ["--set", f"{k}={v}"]
    if extra:
        argv += ["--source-prompt", SOURCE]
    assert main(argv) == 0
    r = edit(bb, str(scene_path), PROMPT, method=method, seed=3, progress=False, **extra, **quick)
    r.save(tmp_path / "api.png")
    pipe = pipeline_class(method).from_backbone(bb)
    gen = torch.Generator().manual_seed(3)
    out = pipe(str(scene_path), PROMPT, generator=gen, progress=False, **extra, **quick)
    out.save(tmp_path / "pipe.png")
    want = px(tmp_path / "cli.png")
    assert np.array_equal(px(tmp_path / "api.png"), want)
    assert np.array_equal(px(tmp_path / "pipe.png"), want)
    assert out.recipe["config"] == r.recipe["config"] and out.seed == 3


def test_every_method_has_its_pipeline_class(monkeypatch):
    for name in available_methods():
        cls = getattr(imagic_kit, f"{get_method(name).display_name}Pipeline")
        assert issubclass(cls, EditPipeline) and cls.method == name
    names = {"ImagicPipeline", "FastEditPipeline", "PTIPipeline", "NullTextPipeline",
             "DecorPipeline", "SDEditPipeline", "DDIMPipeline"}  # fmt: skip
    assert names <= set(imagic_kit.__all__)
    # a method added to the registry has a pipeline with no code of its own
    spec = dataclasses.replace(get_method("sdedit"), name="my-edit", title="")
    monkeypatch.setitem(_REGISTRY, "my-edit", spec)
    cls = imagic_kit.pipelines.MyEditPipeline
    assert cls.method == "my-edit" and cls is pipeline_class("my-edit")


def test_from_pretrained_takes_what_model_takes(tiny_random):
    pipe = EditPipeline.from_pretrained("tiny-random", method="sdedit", device="cpu")
    assert type(pipe).__name__ == "SDEditPipeline" and pipe.backbone.model_id == "tiny-random"
    assert set(pipe.components) >= {"unet", "vae", "scheduler", "tokenizer", "text_encoder"}
    with pytest.raises(ConfigError, match="name the method"):
        EditPipeline.from_pretrained("tiny-random")
    with pytest.raises(ConfigError, match="runs 'imagic', not 'pti'"):
        imagic_kit.ImagicPipeline.from_pretrained("tiny-random", method="pti")
    with pytest.raises(ConfigError, match="unknown method"):
        EditPipeline.from_pretrained("tiny-random", method="imagick")


def test_from_pipe_shares_the_modules_and_a_fit_serves_two_calls(tiny_random, scene_path, tmp_path):
    """A stock diffusers pipeline's modules are used as they are; fit once, then two calls at two
    eta values sample from that fit; a call that changes only sample values reuses a kept fit."""
    from diffusers import StableDiffusionPipeline

    from imagic_kit.models import save_pipeline

    sd = StableDiffusionPipeline.from_pretrained(str(save_pipeline(tiny_random, tmp_path / "m")))
    pipe = imagic_kit.ImagicPipeline.from_pipe(sd)
    assert pipe.unet is sd.unet and pipe.backbone.unet is sd.unet and pipe.vae is sd.vae
    quick = QUICK["imagic"]
    fit_fields = {k: v for k, v in quick.items() if k != "num_inference_steps"}
    fit = pipe.fit(str(scene_path), PROMPT, generator=torch.Generator().manual_seed(0),
                   progress=False, **fit_fields)  # fmt: skip
    a = pipe(
        str(scene_path), PROMPT, fit=fit, eta=0.8, seed=1, progress=False, num_inference_steps=4
    )
    b = pipe(
        str(scene_path), PROMPT, fit=fit, eta=1.1, seed=1, progress=False, num_inference_steps=4
    )
    for out in (a, b):
        assert out.fit is fit and out.fit_reused and out.timings["fit_s"] == 0
    assert not np.array_equal(px(a.images[0]), px(b.images[0]))  # eta acts
    # without fit=: the first call fits, the second (eta and seed only) reuses the kept fit
    c = pipe(str(scene_path), "a green circle", seed=2, progress=False, **quick)
    d = pipe(str(scene_path), "a green circle", seed=5, eta=1.1, progress=False, **quick)
    assert not c.fit_reused and c.timings["fit_s"] > 0
    assert d.fit_reused and d.fit is c.fit and d.recipe["fit_reused"] and d.timings["fit_s"] == 0
    # the same as edit() with the fit passed back
    e = edit(pipe.backbone, str(scene_path), "a green circle", method="imagic", seed=5, eta=1.1,
             artifacts=c.fit, progress=False, **quick)  # fmt: skip
    assert np.array_equal(px(d.images[0]), px(e.image))


def test_a_fit_brings_its_fit_settings(tiny_random, scene_path):
    """With fit=, only sample-stage values need giving: the fit-stage ones are the fit's own."""
    pipe = pipeline_class("ddim").from_backbone(tiny_random)
    fit = pipe.fit(str(scene_path), PROMPT, source_prompt=SOURCE, seed=0, num_inference_steps=5,
                   progress=False)  # fmt: skip
    out = pipe(str(scene_path), PROMPT, source_prompt=SOURCE, fit=fit, guidance_scale=3.0,
               seed=0, progress=False)  # fmt: skip
    assert out.fit_reused and out.recipe["config"]["num_inference_steps"] == 5
    with pytest.raises(ArtifactMismatchError, match="num_inference_steps"):
        pipe(str(scene_path), PROMPT, source_prompt=SOURCE, fit=fit, num_inference_steps=6)


def test_callback_on_step_end_sees_and_changes_the_latents(tiny_random, scene_path):
    pipe = pipeline_class("sdedit").from_backbone(tiny_random)
    kw = dict(seed=4, num_inference_steps=8, progress=False)
    plain = pipe(str(scene_path), PROMPT, **kw)
    seen = []

    def watch(p, step, t, tensors):
        assert p is pipe and set(tensors) == {"latents"}
        seen.append((step, int(t)))

    same = pipe(str(scene_path), PROMPT, callback_on_step_end=watch, **kw)
    steps = [s for s, _ in seen]
    assert steps == list(range(len(steps))) and len(steps) >= 2
    assert [t for _, t in seen] == sorted((t for _, t in seen), reverse=True)
    assert np.array_equal(px(plain.images[0]), px(same.images[0]))  # returning None changes nothing

    def flatten(p, step, t, tensors):
        lat = tensors["latents"]
        return {"latents": lat.mean(dim=(2, 3), keepdim=True).expand_as(lat).clone()}

    flat = pipe(str(scene_path), PROMPT, callback_on_step_end=flatten, **kw)
    out = px(flat.images[0]).astype(float)
    assert out.std(axis=(0, 1)).mean() < px(plain.images[0]).astype(float).std(axis=(0, 1)).mean()
    assert not np.array_equal(px(flat.images[0]), px(plain.images[0]))
    with pytest.raises(ConfigError, match="noise_pred not available"):
        pipe(str(scene_path), PROMPT, callback_on_step_end=watch,
             callback_on_step_end_tensor_inputs=["noise_pred"], **kw)  # fmt: skip


def test_generator_output_type_and_return_dict(tiny_random, scene_path):
    pipe = pipeline_class("sdedit").from_backbone(tiny_random)
    kw = dict(num_inference_steps=5, progress=False)
    by_seed = pipe(str(scene_path), PROMPT, seed=9, **kw)
    by_gen = pipe(str(scene_path), PROMPT, generator=torch.Generator().manual_seed(9), **kw)
    assert isinstance(by_gen, EditPipelineOutput) and by_gen.seed == 9
    assert np.array_equal(px(by_seed.images[0]), px(by_gen.images[0]))
    arr = pipe(str(scene_path), PROMPT, seed=9, output_type="np", **kw).images
    assert arr.shape == (1, 64, 64, 3) and arr.dtype == np.float32
    assert np.array_equal(np.round(arr[0] * 255).astype(np.uint8), px(by_seed.images[0]))
    ten = pipe(str(scene_path), PROMPT, seed=9, output_type="pt", **kw).images
    assert ten.shape == (1, 3, 64, 64) and torch.allclose(
        ten.permute(0, 2, 3, 1), torch.from_numpy(arr)
    )
    tup = pipe(str(scene_path), PROMPT, seed=9, return_dict=False, **kw)
    assert isinstance(tup, tuple) and np.array_equal(px(tup[0][0]), px(by_seed.images[0]))
    with pytest.raises(ConfigError, match="output_type='latent'"):
        pipe(str(scene_path), PROMPT, output_type="latent", **kw)
    with pytest.raises(ConfigError, match="pass one generator"):
        pipe(str(scene_path), PROMPT, generator=[torch.Generator()] * 2, **kw)


def test_to_save_pretrained_and_offload_behave_as_in_diffusers(tiny_random, scene_path, tmp_path):
    """``save_pretrained`` writes a folder diffusers and the toolkit load (the same pixels);
    ``.to()`` keeps the VAE in float32; model offload draws the same pixels."""
    from diffusers import StableDiffusionPipeline

    pipe = pipeline_class("sdedit").from_backbone(tiny_random)
    kw = dict(seed=1, num_inference_steps=5, progress=False)
    want = px(pipe(str(scene_path), PROMPT, **kw).images[0])
    pipe.save_pretrained(tmp_path / "saved")
    assert isinstance(
        StableDiffusionPipeline.from_pretrained(tmp_path / "saved"), StableDiffusionPipeline
    )
    again = EditPipeline.from_pretrained(str(tmp_path / "saved"), method="sdedit", device="cpu")
    assert np.array_equal(px(again(str(scene_path), PROMPT, **kw).images[0]), want)
    other = pipeline_class("sdedit").from_pipe(again)  # shares the backbone of another pipeline
    assert other.backbone is again.backbone
    other.to(torch.bfloat16)
    assert other.unet.dtype == torch.bfloat16 and other.vae.dtype == torch.float32
    assert other.text_encoder.dtype == torch.bfloat16
    other.to("cpu", torch.float32)
    try:
        pipe.enable_model_cpu_offload(device="cpu")
        assert pipe.backbone.device == torch.device("cpu:0")
        assert np.array_equal(px(pipe(str(scene_path), PROMPT, **kw).images[0]), want)
    finally:
        pipe.remove_all_hooks()
    assert pipe.backbone.execution_device is None


def test_the_fit_cache_keeps_the_last_fits_under_what_they_depend_on():
    cache = FitCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    key = {"method": "imagic", "fit_config": {"lr": 1}, "input_hashes": ["x"], "prompt": "p"}
    assert fit_key(key) == fit_key(dict(reversed(list(key.items()))))  # order does not matter
    assert fit_key(key, seed=1) != fit_key(key, seed=2) != fit_key(key)
    with pytest.raises(ValueError):
        FitCache(0)


def test_fit_always_fits_and_a_moved_model_drops_its_kept_fits(scene_path):
    pipe = pipeline_class("ddim").from_pretrained("tiny-random", device="cpu")  # its own weights
    kw = dict(source_prompt=SOURCE, num_inference_steps=4, progress=False)
    a = pipe.fit(str(scene_path), PROMPT, seed=0, **kw)
    b = pipe.fit(str(scene_path), PROMPT, seed=1, **kw)
    assert a is not b and (a.meta["seed"], b.meta["seed"]) == (0, 1)  # never a kept fit
    assert len(pipe.fits) == 1  # one key: the newer fit replaced the older
    out = pipe(str(scene_path), PROMPT, seed=1, **kw)
    assert out.fit is b and out.fit_reused
    pipe.to(torch.bfloat16)  # another dtype: a fit made in float32 is not served
    assert len(pipe.fits) == 0 and pipe.vae.dtype == torch.float32
    assert not pipe(str(scene_path), PROMPT, seed=1, **kw).fit_reused


def test_from_pipe_places_the_model_as_load_backbone_does(tiny_random, tmp_path):
    from diffusers import StableDiffusionPipeline

    from imagic_kit.models import save_pipeline

    sd = StableDiffusionPipeline.from_pretrained(str(save_pipeline(tiny_random, tmp_path / "m")))
    sd.to(torch.bfloat16)  # a copy's weights: the shared test model stays as it is
    pipe = pipeline_class("sdedit").from_pipe(sd)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    swapped = pipeline_class("sdedit").from_pipe(pipe, unet=sd.unet)
    assert swapped.backbone.model_id.endswith("(+unet)")
    with pytest.raises(ConfigError, match="does not take variant"):
        EditPipeline.from_pretrained("tiny-random", method="sdedit", variant="fp16")
    with pytest.raises(ConfigError, match="over 2\\*\\*63-1"):
        g = torch.Generator()
        g.manual_seed(2**63 + 5)
        pipe("unused.png", PROMPT, generator=g)
