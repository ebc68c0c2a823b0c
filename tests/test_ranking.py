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
    args = (cands, pixels(*cands), pixels(ref), "a red circle on a gray background")
    r = rank_candidates(*args, clip_path=shapes.extras["clip_path"])
    assert r.order[0] == 2, r.to_dict()
    assert sorted(r.order) == [0, 1, 2, 3] and len(r.scores) == 4 and r.rank_by == "clip+structure"
    only_clip = rank_candidates(*args, clip_path=shapes.extras["clip_path"], rank_by="clip")
    # CLIP alone reads what is drawn, not where: both red circles lead, the input comes last
    assert set(only_clip.order[:2]) == {1, 2} and only_clip.order[-1] == 0, only_clip.to_dict()


def test_without_clip_the_ranking_uses_structure_and_says_so(caplog):
    ref = scene()
    cands = [scene(x0=30), ref]
    with caplog.at_level(logging.WARNING, logger="imagic_kit.ranking"):
        r = rank_candidates(cands, pixels(*cands), pixels(ref), "a blue circle", clip_path=None)
    assert r.rank_by == "structure" and r.text is None and r.order == [1, 0]
    assert "outlines only" in caplog.text


def test_best_of_n_is_reproducible_and_recorded(tiny, scene_path):
    """``candidates`` = k: k x num_images_per_prompt images drawn (here 12: two batches, 8 + 4), the
    best num_images_per_prompt returned in rank order, the scores in the recipe; the same seed
    draws the same candidates; ``candidates=1`` draws exactly what it returns and records no
    ranking."""
    kw = dict(method="imagic", progress=False, seed=3, **FAST)
    a = edit(tiny, str(scene_path), "a red circle", candidates=6, num_images_per_prompt=2, **kw)
    assert len(a.images) == 2 and len(a.candidates) == 12
    rk = a.recipe["ranking"]
    assert len(rk["score"]) == 12 and sorted(rk["order"]) == list(range(12))
    assert rk["rank_by"] == "structure" and rk["clip"] is None  # tiny-random has no CLIP
    for img, i in zip(a.images, rk["order"][:2]):
        assert np.array_equal(np.asarray(img), np.asarray(a.candidates[i]))
    # the candidates differ (fresh noise each), so the ranking had something to choose from
    assert len({np.asarray(c).tobytes() for c in a.candidates}) == 12
    b = edit(tiny, str(scene_path), "a red circle", candidates=6, num_images_per_prompt=2, **kw)
    assert all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.candidates, b.candidates)
    )
    assert b.recipe["ranking"]["order"] == rk["order"]
    one = edit(tiny, str(scene_path), "a red circle", candidates=1, artifacts=a.fit, **kw)
    assert "ranking" not in one.recipe and one.candidates == [] and len(one.images) == 1


def test_a_bad_ranking_clip_stops_before_the_fit(tiny, scene_path, tmp_path, monkeypatch):
    """A rank_clip that cannot be loaded (a missing folder, a hub id offline) fails before the
    fit, with a message naming the fix; rank_by=clip without any CLIP is a config error."""
    import dataclasses

    from imagic_kit import registry
    from imagic_kit.errors import ConfigError

    fitted = []
    spec = registry.get_method("imagic")
    patched = dataclasses.replace(spec, fit=lambda *a, **k: fitted.append(1))
    monkeypatch.setattr(registry, "get_method", lambda name: patched)
    monkeypatch.setattr("imagic_kit.api.get_method", lambda name: patched)

    def attempt(**ranking):
        edit(
            tiny,
            str(scene_path),
            "a red circle",
            method="imagic",
            progress=False,
            seed=0,
            candidates=2,
            **ranking,
            **FAST,
        )

    for where in (str(tmp_path / "no-clip-here"), "someone/not-a-cached-clip"):
        with pytest.raises(ModelNotAvailableError, match="rank_clip"):
            attempt(rank_clip=where)
    with pytest.raises(ConfigError, match="rank_by=clip needs a CLIP model"):
        attempt(rank_by="clip")
    assert fitted == []
