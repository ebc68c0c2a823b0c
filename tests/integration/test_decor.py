"""DECOR: the projection, the unwanted words, the method and the option of the other methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagic_kit import edit
from imagic_kit.errors import ConfigError
from imagic_kit.projection import directions, dropped_words, project_embeddings
from imagic_kit.shapes import Scene, render

IMAGE = render(Scene("circle", "red", "gray", 14, 18, 26, 3))[0]
OTHER = render(Scene("circle", "red", "gray", 30, 34, 24, 3))[0]
SOURCE, TARGET = "a red circle on a gray background", "a blue circle on a gray background"
QUICK = {"finetune_steps": 3, "num_inference_steps": 3, "batch_size": 2, "candidates": 1}


@pytest.fixture
def xu():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 7, 16, generator=g), torch.randn(3, 16, generator=g)


def test_full_strength_removes_exactly_the_span(xu):
    x, u = xu
    v = directions(u)
    assert v.shape == (16, 3) and torch.allclose(v.T @ v, torch.eye(3), atol=1e-5)
    out = project_embeddings(x, u, 1.0)
    assert (out @ v).abs().max() < 1e-5  # nothing left along V
    removed = x - out
    assert torch.allclose(removed, (removed @ v) @ v.T, atol=1e-5)  # only V's span was taken


def test_zero_strength_is_the_identity(xu):
    x, u = xu
    assert torch.equal(project_embeddings(x, u, 0.0), x)


@pytest.mark.parametrize("strength", [0.3, 0.7, 1.0])
def test_orthogonal_directions_are_untouched_and_v_scales(xu, strength):
    x, u = xu
    v = directions(u)
    w = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    w = w - v @ (v.T @ w)  # orthogonal to V
    out = project_embeddings(x, u, strength)
    assert torch.allclose(out @ w, x @ w, atol=1e-5)
    assert torch.allclose(out @ v, (1 - strength) * (x @ v), atol=1e-5)


def test_rank_keeps_the_strongest_directions(xu):
    x, u = xu
    v1 = directions(u, rank=1)
    _, _, vh = torch.linalg.svd(u)
    assert v1.shape == (16, 1) and torch.allclose((v1.T @ vh[0]).abs(), torch.ones(1), atol=1e-5)
    assert directions(torch.cat([u, u])).shape == (16, 3)  # repeated rows add no direction


def test_dropped_words_leave_out_shared_and_stop_words():
    assert dropped_words(SOURCE, TARGET) == ["red"]
    assert dropped_words("a red circle on the gray background", "the blue square on a gray "
                         "background") == ["red", "circle"]  # fmt: skip
    assert dropped_words(TARGET, TARGET) == []


def test_decor_fit_serves_other_targets_and_records_the_words(shapes):
    first = edit(shapes, IMAGE, TARGET, method="decor", source_prompt=SOURCE, seed=0,
                 progress=False, **QUICK)  # fmt: skip
    assert first.recipe["edit_facts"] == {"decor_words": ["red"]}
    other = edit(shapes, IMAGE, "a red square on a gray background", method="decor",
                 source_prompt=SOURCE, artifacts=first.fit, seed=0, progress=False, **QUICK)  # fmt: skip
    assert other.recipe["fit_reused"] and other.recipe["edit_facts"] == {"decor_words": ["circle"]}
    given = edit(shapes, IMAGE, TARGET, method="decor", source_prompt=SOURCE, artifacts=first.fit,
                 decor_remove="red, gray", seed=0, progress=False, **QUICK)  # fmt: skip
    assert given.recipe["edit_facts"] == {"decor_words": ["red", "gray"]}
    off = edit(shapes, IMAGE, TARGET, method="decor", source_prompt=SOURCE, artifacts=first.fit,
               decor_strength=0, seed=0, progress=False, **QUICK)  # fmt: skip
    assert "edit_facts" not in off.recipe
    assert not np.array_equal(np.asarray(off.image), np.asarray(first.image))


def test_several_references_and_a_target_that_drops_nothing(shapes):
    r = edit(shapes, [IMAGE, OTHER], TARGET, method="decor", source_prompt=SOURCE, seed=0,
             progress=False, **QUICK)  # fmt: skip
    assert len(r.recipe["input_hashes"]) == 2
    with pytest.raises(ConfigError, match="decor_remove"):
        edit(shapes, IMAGE, SOURCE, method="decor", source_prompt=SOURCE, **QUICK)


@pytest.mark.parametrize("method", ["imagic", "pti"])
def test_the_option_on_other_methods(shapes, method):
    quick = (
        {"embedding_steps": 2, "finetune_steps": 2, "num_inference_steps": 3, "candidates": 1}
        if method == "imagic"
        else {"num_inference_steps": 3, "tune_steps": 1, "candidates": 1}
    )
    with pytest.raises(ConfigError, match="decor_remove=WORDS or give --source-prompt"):
        edit(shapes, IMAGE, TARGET, method=method, decor_strength=0.5, **quick)
    plain = edit(shapes, IMAGE, TARGET, method=method, seed=0, progress=False, **quick)
    off = edit(shapes, IMAGE, TARGET, method=method, source_prompt=SOURCE, seed=0, progress=False,
               artifacts=plain.fit, **quick)  # fmt: skip
    assert np.array_equal(np.asarray(off.image), np.asarray(plain.image))  # off by default
    on = edit(shapes, IMAGE, TARGET, method=method, source_prompt=SOURCE, decor_strength=1.0,
              seed=0, progress=False, artifacts=plain.fit, **quick)  # fmt: skip
    assert on.recipe["fit_reused"] and on.recipe["edit_facts"] == {"decor_words": ["red"]}
    assert not np.array_equal(np.asarray(on.image), np.asarray(plain.image))


def test_every_reference_is_trained_on(shapes, monkeypatch):
    import imagic_kit.methods.decor as method

    seen = []
    real = method.denoising_loss

    def spy(backbone, latents, *a, **kw):
        seen.extend(float(x.sum()) for x in latents)
        return real(backbone, latents, *a, **kw)

    monkeypatch.setattr(method, "denoising_loss", spy)
    third = render(Scene("circle", "red", "gray", 6, 8, 20, 5))[0]
    edit(shapes, [IMAGE, OTHER, third], TARGET, method="decor", source_prompt=SOURCE, seed=0,
         progress=False, **{**QUICK, "finetune_steps": 3})  # fmt: skip
    assert len({round(v, 3) for v in seen}) == 3  # batch 2 over 3 steps: each reference in turn


def test_a_remove_list_with_no_word_is_refused(shapes):
    with pytest.raises(ConfigError, match="names no word"):
        edit(shapes, IMAGE, TARGET, method="decor", source_prompt=SOURCE, decor_remove=" , ",
             **QUICK)  # fmt: skip
