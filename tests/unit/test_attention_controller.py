"""The attention control's parts on plain tensors: token alignment, reweighting, the controller's
replacement of maps and the local blend."""

from __future__ import annotations

import pytest
import torch

from imagic_kit.attention_control import changed_words, parse_reweight
from imagic_kit.attention_maps import Controller
from imagic_kit.words import align


def test_align_maps_shared_tokens_and_a_same_length_swap():
    # start, a, red, circle, end, pad, pad  ->  start, a, blue, circle, end, pad, pad
    assert align([0, 1, 2, 3, 9, 9, 9], [0, 1, 5, 3, 9, 9, 9]).tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_align_leaves_added_words_as_the_targets_own():
    # "a circle" -> "a big red circle": the added tokens have no source token
    got = align([0, 1, 3, 9, 9, 9, 9], [0, 1, 6, 2, 3, 9, 9]).tolist()
    assert got == [0, 1, -1, -1, 2, 3, 4]


def test_reweight_parses_pairs_and_refuses_what_is_not_one():
    assert parse_reweight("blue:2, circle:0.5") == [("blue", 2.0), ("circle", 0.5)]
    assert parse_reweight("") == []
    for bad in ("blue", "blue:x", ":2", "blue:nan"):
        with pytest.raises(ValueError, match="WORD:FACTOR"):
            parse_reweight(bad)


def test_changed_words_are_the_words_either_prompt_lacks():
    assert changed_words(
        "a red circle on a gray background", "a blue circle on a gray background"
    ) == [
        "blue",
        "red",
    ]
    assert changed_words("a red circle", "a red circle") == []


def _controller(
    rows=2, steps=10, cross=5, self_steps=5, mapping=None, eq=None, blend=None, size=(4, 4)
):
    k = 4
    return Controller(
        rows=rows,
        steps=steps,
        cross_steps=cross,
        self_steps=self_steps,
        mapping=torch.arange(k) if mapping is None else mapping,
        equalizer=torch.ones(k) if eq is None else eq,
        blend_tokens=blend,
        threshold=0.3,
        latent_size=size,
    )


def test_cross_maps_of_the_target_become_the_sources_in_the_replace_steps_only():
    c = _controller(mapping=torch.tensor([0, 1, -1, 3]), eq=torch.tensor([1.0, 2.0, 1.0, 1.0]))
    probs = torch.rand(4, 2, 16, 4).softmax(-1)  # [uncond src, uncond tgt, cond src, cond tgt]
    out = c.edit(probs, is_cross=True)
    assert torch.equal(out[:3], probs[:3])  # the unconditional half and the source run as they are
    assert torch.allclose(out[3, ..., 0], probs[2, ..., 0])  # mapped: the source's map
    assert torch.allclose(out[3, ..., 1], 2 * probs[2, ..., 1])  # mapped and reweighted
    assert torch.allclose(out[3, ..., 2], probs[3, ..., 2])  # the target's own token
    c.begin(5)  # past cross_replace_steps
    assert torch.equal(c.edit(probs, is_cross=True), probs)


def test_self_maps_are_replaced_at_coarse_layers_in_the_self_replace_steps():
    c = _controller(self_steps=3)
    assert c.wants(is_cross=False, query_len=4)  # 2x2 of a 4x4 latent: replaced
    assert not c.wants(is_cross=False, query_len=16)  # the latent's own resolution: not
    probs = torch.rand(2, 2, 4, 4).softmax(-1)  # no guidance: every row conditional
    out = c.edit(probs, is_cross=False)
    assert torch.equal(out[1], probs[0]) and torch.equal(out[0], probs[0])
    c.begin(3)
    assert not c.wants(is_cross=False, query_len=4)


def test_a_batch_the_controller_was_not_made_for_is_left_alone():
    c = _controller(rows=2)
    probs = torch.rand(3, 2, 16, 4)
    assert torch.equal(c.edit(probs, is_cross=True), probs)


def test_local_blend_keeps_the_source_outside_the_words_region():
    c = _controller(steps=10, blend=([1], [1]), size=(16, 16))
    probs = torch.full((2, 1, 16, 4), 1e-3)  # 4x4 maps, the only ones kept
    probs[:, 0, 0, 1] = 1.0  # the word attends to the top-left cell only
    c.edit(probs, is_cross=True)
    mask = c.mask()
    assert mask is not None and mask.shape == (1, 1, 16, 16)
    x = torch.stack([torch.zeros(1, 16, 16), torch.ones(1, 16, 16)])  # source 0, target 1
    assert torch.equal(c.blend(0, x), x)  # before the blend starts
    out = c.blend(5, x)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], mask[0])  # the target where the mask is, the source elsewhere
    # the cell and its neighbours (the max-pool), upsampled: the top-left 8x8 of the latent
    assert mask[0, 0, :8, :8].all() and mask.sum() == 64
