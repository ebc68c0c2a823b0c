"""Prompt-to-Prompt attention control on real diffusers UNets: the processors, the methods that
use it, and its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import draw_scene

from imagic_kit import attention_maps as ac
from imagic_kit import sampling
from imagic_kit.api import edit, edit_sweep
from imagic_kit.config import field_infos
from imagic_kit.errors import ConfigError
from imagic_kit.registry import get_method

SRC = "a red circle on a gray background"
TGT = "a blue circle on a gray background"
#: An edit of the scene at the methods' smoke settings.
SMOKE = dict(source_prompt=SRC, preset="smoke", seed=0, progress=False)
FIELDS = (
    "cross_replace_steps",
    "self_replace_steps",
    "reweight",
    "blend_words",
    "blend_mask",
    "blend_noise",
    "blend_threshold",
)


def _processors(unet):
    return {name: id(p) for name, p in unet.attn_processors.items()}


def test_controlled_attention_that_changes_nothing_is_the_unets_own_attention(tiny_random):
    unet = tiny_random.unet
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(
        2, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        plain = unet(x, 10, encoder_hidden_states=cond).sample
        idle = ac.Controller(
            rows=5,  # no batch of this size runs: every layer's maps stay as computed
            steps=1,
            cross_steps=1,
            self_steps=1,
            mapping=torch.arange(77),
            equalizer=torch.ones(77),
            blend_tokens=None,
            threshold=0.3,
            latent_size=(8, 8),
        )
        with ac.installed(unet, idle):
            explicit = unet(x, 10, encoder_hidden_states=cond).sample
    assert torch.allclose(plain, explicit, atol=1e-5)


@pytest.mark.parametrize("method", ["ddim", "null-text", "pti"])
def test_the_fields_are_sample_stage_fields_of_the_inversion_methods(method):
    infos = {i.name: i for i in field_infos(get_method(method).config_cls)}
    assert all(infos[f].stage == "sample" for f in FIELDS)
    on = {"ddim": True, "null-text": True, "pti": False}[method]
    assert (infos["cross_replace_steps"].default > 0) is on


def test_processors_are_restored_after_an_edit_and_after_one_that_failed(shapes, monkeypatch):
    before = _processors(shapes.unet)
    image = _scene()
    edit(shapes, image, TGT, method="ddim", **SMOKE)
    assert _processors(shapes.unet) == before

    seen = []
    real_step = sampling.ddim_step

    def failing_step(*args, **kwargs):
        seen.append({type(p).__name__ for p in shapes.unet.attn_processors.values()})
        if len(seen) == 2:
            raise RuntimeError("interrupted")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(sampling, "ddim_step", failing_step)
    with pytest.raises(RuntimeError, match="interrupted"):
        edit(
            shapes,
            image,
            TGT,
            method="ddim",
            **SMOKE,
        )
    assert seen[0] == {"ControlledAttention"}  # the control was installed while sampling ran
    assert _processors(shapes.unet) == before


def test_reconstruction_is_unchanged_when_the_target_is_the_source(shapes):
    results = edit_sweep(
        shapes,
        _scene(),
        SRC,
        method="null-text",
        **SMOKE,
        sweep={"cross_replace_steps": [0.0, 0.8], "self_replace_steps": [0.0, 0.4]},
    )
    off, *on = (np.asarray(r.image, dtype=np.int16) for r in results)
    for img in on:
        assert np.abs(img - off).max() <= 1


def test_the_control_changes_the_edit_and_records_itself(shapes):
    off, on = edit_sweep(
        shapes,
        _scene(),
        TGT,
        method="ddim",
        **SMOKE,
        cross_replace_steps=0.0,
        blend_mask="attention",
        sweep={"self_replace_steps": [0.0, 1.0]},
    )
    assert np.abs(np.asarray(on.image, np.int16) - np.asarray(off.image, np.int16)).max() > 8
    assert on.recipe["edit_facts"]["attention_control"] == {
        "tokens": "word swap",
        "blend": "attention",
        "blend_words": ["blue", "red"],
    }
    assert "attention_control" not in off.recipe.get("edit_facts", {})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"reweight": "purple:2"}, "reweight names 'purple'"),
        ({"blend_words": "purple", "blend_mask": "attention"}, "blend_words='purple'"),
        ({"blend_words": "blue"}, "only blend_mask=attention"),
        ({"reweight": "blue"}, "WORD:FACTOR"),
    ],
)
def test_words_the_prompts_lack_are_refused_before_the_fit(shapes, overrides, match, monkeypatch):
    from imagic_kit.methods import ddim

    monkeypatch.setattr(ddim, "ddim_invert", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(ConfigError, match=match):
        edit(
            shapes,
            _scene(),
            TGT,
            method="ddim",
            source_prompt=SRC,
            seed=0,
            progress=False,
            **overrides,
        )


def _scene():
    return draw_scene()


def test_a_step_end_callback_sees_the_edit_not_the_source_branch(shapes):
    from imagic_kit.pipelines import pipeline_class

    pipe = pipeline_class("ddim").from_backbone(shapes)
    rows = []

    def watch(p, step, t, tensors):
        rows.append(tensors["latents"].shape[0])
        return {"latents": tensors["latents"]}  # handed back: the source branch is kept

    out = pipe(_scene(), TGT, source_prompt=SRC, num_inference_steps=4, seed=0, progress=False,
               callback_on_step_end=watch)  # fmt: skip
    assert rows == [1, 1, 1, 1] and len(out.images) == 1


def test_the_difference_region_marks_the_recoloured_object(shapes):
    from imagic_kit.imaging import pil_to_tensor
    from imagic_kit.regions import difference_region

    pixels = pil_to_tensor(_scene())  # a red disc in the box (20, 18)-(46, 44) on gray
    region = difference_region(shapes, pixels, SRC, TGT, threshold=0.3)
    assert region is not None and region.shape == (1, 1, 16, 16)  # the latents' size
    disc = np.zeros((16, 16), bool)
    disc[18 // 4 : 44 // 4 + 1, 20 // 4 : 46 // 4 + 1] = True  # the disc's latent cells
    marked = region[0, 0].numpy() > 0
    assert marked[disc].mean() > 0.8  # the disc is in the region
    assert marked[~disc].mean() < 0.25  # little else is
    # the same inputs give the same region; the same prompt twice: nothing to confine
    assert torch.equal(region, difference_region(shapes, pixels, SRC, TGT, threshold=0.3))
    assert difference_region(shapes, pixels, SRC, SRC, threshold=0.3) is None


@pytest.mark.parametrize("method", ["ddim", "null-text", "pti"])
def test_the_difference_blend_keeps_the_input_outside_its_region(shapes, method):
    image = _scene()
    # pti: the option on, best of several candidates (draw()'s batches carry the region)
    on = {"cross_replace_steps": 0.4, "self_replace_steps": 0.5} if method == "pti" else {}
    result = edit(
        shapes,
        image,
        TGT,
        method=method,
        **SMOKE,
        **on,
        blend_mask="difference",
        blend_threshold=0.3,
    )
    facts = result.recipe["edit_facts"]["attention_control"]
    assert facts == {"tokens": "word swap", "blend": "difference", "blend_words": []}
    out = np.asarray(result.image, np.int16)
    src = np.asarray(image, np.int16)
    far = np.ones((64, 64), bool)  # away from the disc by more than the region's margin
    far[18 - 12 : 44 + 12, 20 - 12 : 46 + 12] = False
    assert np.abs(out[far] - src[far]).max() <= 1
    assert np.abs(out[24:38, 26:40] - src[24:38, 26:40]).mean() > 30  # the disc was recoloured
