"""FastEdit: the semantic-aware range, reuse by range, the recipe, the LoRA export."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from imagic_kit import edit
from imagic_kit.errors import ArtifactMismatchError, ConfigError
from imagic_kit.methods.fastedit import (
    RANGE_GRID,
    FastEditConfig,
    candidate_eta,
    semantic_range,
    timestep_range,
)
from imagic_kit.shapes import Scene, render

QUICK = {"finetune_steps": 2, "num_inference_steps": 4}
IMAGE = render(Scene("circle", "red", "gray", 14, 18, 26, 3))[0]


@pytest.mark.parametrize("width", [RANGE_GRID, 0.3, 0.5, 1.0])
def test_semantic_range_is_monotone_on_the_grid_and_in_bounds(width):
    cfg = FastEditConfig(range_width=width)
    ranges = [semantic_range(d, cfg) for d in np.linspace(-0.5, 2.5, 301)]
    for (lo0, hi0), (lo1, hi1) in zip(ranges, ranges[1:]):
        assert lo1 <= lo0 and hi1 <= hi0  # a larger gap never moves the range up
    for lo, hi in ranges:
        assert 0.0 <= lo < hi <= 1.0
        assert abs(lo / RANGE_GRID - round(lo / RANGE_GRID)) < 1e-9
        assert abs(hi / RANGE_GRID - round(hi / RANGE_GRID)) < 1e-9
    assert ranges[0] == (round(1 - width, 9), 1.0) or ranges[0][1] == 1.0
    assert ranges[-1][0] == 0.0


def test_text_only_model_names_the_presets_that_work(tiny):
    with pytest.raises(ConfigError, match="tiny-shapes, sd-image-variations"):
        edit(tiny, IMAGE, "a blue circle on a gray background", method="fastedit", **QUICK)


def test_recipe_holds_the_range_and_the_distance(shapes):
    r = edit(shapes, IMAGE, "a blue circle on a gray background", method="fastedit", seed=0,
             progress=False, **QUICK)  # fmt: skip
    facts = r.recipe["edit_facts"]
    lo, hi = facts["timestep_range"]
    assert 0 <= lo < hi <= 1 and 0 <= facts["semantic_distance"] <= 2
    fixed = edit(shapes, IMAGE, "a blue circle on a gray background", method="fastedit", seed=0,
                 progress=False, timesteps="0.2-0.7", **QUICK)  # fmt: skip
    assert fixed.recipe["edit_facts"] == {"timestep_range": [0.2, 0.7]}


@pytest.mark.parametrize("bad", ["fixed", "0.5", "0.7-0.2", "0-1.5", "a-b", ""])
def test_a_bad_range_is_refused_with_the_form_to_use(bad):
    from imagic_kit.config import apply_overrides

    with pytest.raises(ConfigError, match=r"timesteps=.*(LO-HI|LO < HI)"):
        apply_overrides(FastEditConfig(), {"timesteps": bad})


def test_same_range_reuses_the_fit_another_refits_and_says_so(shapes, caplog):
    from imagic_kit.api import EditInputs

    near, far = "a red circle on a white background", "a green triangle on a black background"
    dist = {}
    for text in (near, far):
        inputs = EditInputs([IMAGE], None, text, None, [])
        dist[text] = timestep_range(shapes, inputs, FastEditConfig())["semantic_distance"]
    mid = (dist[near] + dist[far]) / 2
    kw = dict(seed=0, progress=False, distance_low=mid - 1e-3, distance_high=mid + 1e-3, **QUICK)
    first = edit(shapes, IMAGE, near, method="fastedit", **kw)
    with pytest.raises(ArtifactMismatchError, match="timesteps"):  # a fit-stage field: refused
        edit(shapes, IMAGE, far, method="fastedit", artifacts=first.fit, timesteps="0-1",
             **{k: v for k, v in kw.items()})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        other = edit(shapes, IMAGE, far, method="fastedit", artifacts=first.fit, **kw)
    assert not other.recipe["fit_reused"] and "refitting" in caplog.text
    again = edit(shapes, IMAGE, near.replace("white", "gray"), method="fastedit",
                 artifacts=first.fit, **kw)  # fmt: skip
    assert again.recipe["fit_reused"] == (
        again.recipe["edit_facts"]["timestep_range"] == first.recipe["edit_facts"]["timestep_range"]
    )


def test_exported_lora_loads_into_the_variations_unet(shapes, tmp_path):
    from imagic_kit.models import variations_pipeline

    edit(shapes, IMAGE, "a blue circle on a gray background", method="fastedit", seed=0,
         progress=False, save_artifacts=tmp_path / "f", **QUICK)  # fmt: skip
    attention = tmp_path / "attention"
    edit(shapes, IMAGE, "a blue circle on a gray background", method="fastedit", seed=0,
         progress=False, save_artifacts=attention, preset="paper", **QUICK)  # fmt: skip
    for folder, targets in ((tmp_path / "f", ("conv1", "conv2")),
                            (attention, ("to_q", "to_k", "to_v", "to_out"))):  # fmt: skip
        pipe = variations_pipeline()
        pipe.unet.load_lora_adapter(
            str(folder), weight_name="unet_lora.safetensors", prefix="unet",
            adapter_name="fastedit",
        )  # fmt: skip
        lora = [n for n, _ in pipe.unet.named_parameters() if "lora" in n]
        assert lora and all(any(t in n for t in targets) for n in lora)
        b = [p for n, p in pipe.unet.named_parameters() if "lora_B" in n]
        assert any(float(p.detach().abs().max()) > 0 for p in b)  # trained, not the zero init


def test_a_built_variations_model_carries_its_own_clip(tmp_path):
    """The random variations architectures (for timing) build a CLIP whose vision tower is their
    image encoder, so FastEdit runs on them without text_clip."""
    from imagic_kit import load_backbone
    from imagic_kit.clip_score import clip_features, load_clip

    bb = load_backbone("tiny-random-variations", device="cpu")
    clip = load_clip(bb.clip_path)
    pix = bb.feature_extractor(images=[IMAGE], return_tensors="pt").pixel_values
    with torch.no_grad():
        own = bb.image_encoder(pixel_values=pix).image_embeds
        theirs = clip_features(clip.model.get_image_features(pixel_values=pix))
    assert torch.allclose(theirs, own, atol=1e-5)
    r = edit(bb, IMAGE, "a blue circle", method="fastedit", seed=0, progress=False,
             candidates=1, **QUICK)  # fmt: skip
    assert 0 <= r.recipe["edit_facts"]["semantic_distance"] <= 2


def test_candidates_spread_eta_evenly_around_it():
    cfg = FastEditConfig(eta=0.7, eta_spread=0.2)
    assert [round(candidate_eta(cfg, j, 5), 6) for j in range(5)] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert candidate_eta(FastEditConfig(eta=0.7, eta_spread=0.0), 3, 8) == 0.7
    assert candidate_eta(cfg, 0, 1) == 0.7  # one sample: eta itself
