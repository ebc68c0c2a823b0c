"""Best-of-N ranking of candidate edits (imagic_kit/ranking.py) and its use by ``edit``."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from imagic_kit import edit
from imagic_kit.errors import ModelNotAvailableError
from imagic_kit.imaging import pil_to_tensor
from imagic_kit.ranking import rank_candidates, structure_similarity
from imagic_kit.shapes import Scene, render

FAST = {"embedding_steps": 4, "finetune_steps": 4, "num_inference_steps": 3, "batch_size": 1}


def scene(**kw):
    base = dict(
        shape="circle", colour="blue", background="gray", x0=12, y0=20, side=26, texture_seed=7
    )
    return render(Scene(**{**base, **kw}))[0]


def pixels(*images):
    import torch

    return torch.cat([pil_to_tensor(im) for im in images])


def test_structure_prefers_the_object_in_place_whatever_its_colour():
    """The outline measure: the same scene scores 1; a colour or background change of the object in
    place scores higher than the same object moved by 14 px or redrawn as another shape."""
    ref = scene()
    cands = [
        ref,
        scene(colour="red"),
        scene(background="white", texture_seed=3),
        scene(x0=26),
        scene(shape="square"),
    ]
    s = structure_similarity(pixels(*cands), pixels(ref))
    assert s[0] == pytest.approx(1.0, abs=1e-6)
    assert min(s[1], s[2]) > max(s[3], s[4]), s


def test_clip_and_structure_pick_the_edit_in_place(shapes):
    """With the embedded model's CLIP: for "a red circle", the red circle in place beats the input
    (no edit), a red circle moved away, and a red square in place; CLIP alone cannot tell the moved
    circle from the one in place."""
    ref = scene()
    good = scene(colour="red")
    cands = [ref, scene(colour="red", x0=30, y0=4), good, scene(colour="red", shape="square")]
    r = rank_candidates(
        cands,
        pixels(*cands),
        pixels(ref),
        "a red circle on a gray background",
        clip_path=shapes.extras["clip_path"],
    )
    assert r.order[0] == 2, r.to_dict()
    assert sorted(r.order) == [0, 1, 2, 3] and len(r.scores) == 4 and r.rank_by == "clip+structure"
    only_clip = rank_candidates(
        cands,
        pixels(*cands),
        pixels(ref),
        "a red circle on a gray background",
        clip_path=shapes.extras["clip_path"],
        rank_by="clip",
    )
    # CLIP alone reads what is drawn, not where: both red circles lead, the input comes last
    assert set(only_clip.order[:2]) == {1, 2} and only_clip.order[-1] == 0, only_clip.to_dict()


def test_without_clip_the_ranking_uses_structure_and_says_so(caplog):
    ref = scene()
    cands = [scene(x0=30), ref]
    with caplog.at_level(logging.WARNING, logger="imagic_kit.ranking"):
        r = rank_candidates(cands, pixels(*cands), pixels(ref), "a blue circle", clip_path=None)
    assert r.rank_by == "structure" and r.text is None and r.order == [1, 0]
    assert "structure only" in caplog.text


def test_best_of_n_is_reproducible_and_recorded(tiny, scene_path):
    """``candidates`` = k: k x num_images_per_prompt images drawn, the best num_images_per_prompt
    returned (the first of them has the top score), the scores in the recipe; the same seed gives
    the same images; ``candidates=1`` draws exactly what it returns and records no ranking."""
    kw = dict(method="imagic", progress=False, seed=3, **FAST)
    a = edit(tiny, str(scene_path), "a red circle", candidates=3, num_images_per_prompt=2, **kw)
    assert len(a.images) == 2 and len(a.candidates) == 6
    rk = a.recipe["ranking"]
    assert len(rk["score"]) == 6 and sorted(rk["order"]) == list(range(6))
    best = rk["order"][:2]
    for img, i in zip(a.images, best):
        assert np.array_equal(np.asarray(img), np.asarray(a.candidates[i]))
    assert rk["score"][best[0]] == max(rk["score"])
    b = edit(tiny, str(scene_path), "a red circle", candidates=3, num_images_per_prompt=2, **kw)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images))
    one = edit(tiny, str(scene_path), "a red circle", candidates=1, artifacts=a.fit, **kw)
    assert "ranking" not in one.recipe and one.candidates == [] and len(one.images) == 1


def test_a_missing_ranking_clip_is_a_clear_error(tiny, scene_path, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="rank_clip"):
        edit(
            tiny,
            str(scene_path),
            "a red circle",
            method="imagic",
            progress=False,
            seed=0,
            candidates=2,
            rank_clip=str(tmp_path / "no-clip-here"),
            **FAST,
        )
