"""Best-of-N ranking of candidate edits (imagic_kit/ranking.py) and its use by ``edit``."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from imagic_kit import edit
from imagic_kit.errors import ModelNotAvailableError
from imagic_kit.imaging import pil_to_tensor
from imagic_kit.ranking import (
    RANK_BY,
    fidelity,
    rank_candidates,
    rank_terms,
    score_candidates,
    structure_similarity,
)
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
    for rank_by in ("clip+structure+fidelity", "clip+structure"):
        r = rank_candidates(*args, clip_path=shapes.clip_path, rank_by=rank_by)
        assert r.order[0] == 2, r.to_dict()
        assert sorted(r.order) == [0, 1, 2, 3] and len(r.scores) == 4 and r.rank_by == rank_by
    only_clip = rank_candidates(*args, clip_path=shapes.clip_path, rank_by="clip")
    # CLIP alone reads what is drawn, not where: both red circles lead, the input comes last
    assert set(only_clip.order[:2]) == {1, 2} and only_clip.order[-1] == 0, only_clip.to_dict()


def test_without_clip_the_ranking_drops_the_text_term_and_says_so(caplog):
    ref = scene()
    cands = [scene(x0=30), ref]
    for rank_by, left in [
        ("clip+structure+fidelity", "structure+fidelity"),
        ("clip+structure", "structure"),
    ]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="imagic_kit.ranking"):
            r = rank_candidates(
                cands, pixels(*cands), pixels(ref), "a blue circle", clip_path=None, rank_by=rank_by
            )
        assert r.rank_by == left and r.text is None and r.order == [1, 0]
        assert "without the text score" in caplog.text and "no CLIP model" in caplog.text
        assert len(r.fidelity) == 2 and r.fidelity[1] == pytest.approx(100.0)
    # the moved circle changes under half the pixels: fidelity alone cannot see it (a tie, kept
    # in drawing order), but it sees a redrawn background texture
    assert r.fidelity[0] == pytest.approx(100.0)
    cands = [scene(texture_seed=3), ref]
    with caplog.at_level(logging.WARNING, logger="imagic_kit.ranking"):
        r = rank_candidates(
            cands,
            pixels(*cands),
            pixels(ref),
            "a blue circle",
            clip_path=None,
            rank_by="clip+fidelity",
        )
    assert r.rank_by == "fidelity" and r.order == [1, 0] and "by fidelity only" in caplog.text
    with pytest.raises(ValueError, match="needs clip_path"):
        rank_candidates(cands, pixels(*cands), pixels(ref), "x", clip_path=None, rank_by="clip")


def test_no_clip_is_loaded_when_the_ranking_does_not_use_it(tmp_path):
    """A rank_clip that could not be loaded is not even tried when rank_by leaves out clip."""
    from imagic_kit.registry import make_config
    from imagic_kit.selection import ranking_clip

    class NoClip:
        clip_path = None

    bad = str(tmp_path / "no-clip-here")
    cfg = make_config(
        "imagic", None, None, candidates=2, rank_by="structure+fidelity", rank_clip=bad
    )
    assert ranking_clip(NoClip(), cfg) is None
    with pytest.raises(ModelNotAvailableError, match="rank_clip"):
        ranking_clip(NoClip(), make_config("imagic", None, None, candidates=2, rank_clip=bad))


def test_fidelity_ignores_the_edited_part_and_sees_a_changed_texture():
    """The trimmed PSNR: a recoloured object (a big change on a small part) keeps the input's
    fidelity, while a slight change everywhere (the texture redrawn) loses it -- the opposite of a
    plain PSNR, which would prefer the redrawn texture."""
    import torch

    ref = pixels(scene())
    recoloured = pixels(scene(colour="red"))
    redrawn = pixels(scene(texture_seed=3))
    f = fidelity(torch.cat([ref, recoloured, redrawn]), ref)
    assert f[0] == pytest.approx(100.0)  # identical: the 1e-10 floor
    assert f[1] > 60 and f[2] < 45, f
    mse = [float(((x - ref) ** 2).mean()) for x in (recoloured, redrawn)]
    assert mse[0] > mse[1]  # a plain PSNR ranks them the other way round
    # at more than 128 px the measure works on an area-downsampled copy: same order
    big = torch.nn.functional.interpolate(
        torch.cat([ref, recoloured, redrawn]), scale_factor=4, mode="nearest"
    )
    fb = fidelity(big, big[:1])
    assert fb[1] > fb[2]


def test_score_candidates_sums_weighted_z_scores_of_the_chosen_terms():
    import torch

    text, struct, fid = [0.1, 0.3, 0.2], [0.9, 0.1, 0.5], [30.0, 20.0, 40.0]

    def z(v):
        t = torch.tensor(v, dtype=torch.float64)
        return (t - t.mean()) / t.std(unbiased=False)

    want = z(text) + 0.5 * z(struct) + 0.25 * z(fid)
    order, score = score_candidates(text, struct, fid, rank_by="clip+structure+fidelity")
    assert score == pytest.approx(want.tolist())
    assert order == sorted(range(3), key=lambda i: -want[i])
    order, score = score_candidates(
        text, struct, fid, rank_by="clip+fidelity", structure_weight=9, fidelity_weight=2
    )
    assert score == pytest.approx((z(text) + 2 * z(fid)).tolist())
    assert score_candidates(None, struct, fid, rank_by="structure")[0] == [0, 2, 1]
    assert score_candidates(None, [1.0, 1.0], [5.0, 5.0], rank_by="structure")[0] == [0, 1]  # ties
    with pytest.raises(ValueError, match="needs the CLIP scores"):
        score_candidates(None, struct, fid, rank_by="clip+structure")
    for bad in ("clip+clip", "edges", ""):
        with pytest.raises(ValueError, match="rank_by must be one of"):
            rank_terms(bad)
    with pytest.raises(ValueError, match="write it as 'clip\\+fidelity'"):  # as config checks it
        rank_terms("fidelity+clip")
    assert all("+".join(rank_terms(r)) == r for r in RANK_BY) and len(set(RANK_BY)) == 7


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
    assert rk["rank_by"] == "structure+fidelity" and rk["clip"] is None  # tiny-random: no CLIP
    assert len(rk["structure"]) == len(rk["fidelity"]) == 12
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
    monkeypatch.setattr("imagic_kit.request.get_method", lambda name: patched)

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
