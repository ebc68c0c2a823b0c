"""Restoring the unedited region from the input (imagic_kit/restore.py) and its use by ``edit``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagic_kit import edit
from imagic_kit.imaging import pil_to_tensor
from imagic_kit.restore import edited_mask, keep_outside, restore_pixels
from imagic_kit.shapes import Scene, render


def scene(**kw):
    base = dict(
        shape="circle", colour="blue", background="gray", x0=12, y0=20, side=26, texture_seed=7
    )
    return pil_to_tensor(render(Scene(**{**base, **kw}))[0])


def test_a_recoloured_object_is_kept_and_the_drifted_rest_is_the_input_again():
    src = scene()
    edited = scene(colour="red")  # the edit: the object's colour
    inside = (edited - src).abs().amax(1)[0] > 0.5
    drift = 0.06 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out, mask = restore_pixels((edited + drift).clamp(-1, 1), src, 0.12)
    assert out.shape == src.shape and mask.shape == (1, 1, 64, 64)
    # the object: the edit's pixels, drift included (nothing of the edit is undone)
    assert torch.allclose(out[0][:, inside], (edited + drift).clamp(-1, 1)[0][:, inside], atol=1e-3)
    # away from the object (more than its grown, feathered rim): exactly the input
    near = torch.nn.functional.max_pool2d(inside[None, None].float(), 15, 1, 7)[0, 0] > 0
    assert mask[0, 0][~near].max() == 0
    assert torch.equal(out[0][:, ~near], src[0][:, ~near])
    # without the restore the background had drifted
    assert (edited + drift)[0][:, ~near].sub(src[0][:, ~near]).abs().mean() > 0.03


def test_a_global_change_is_left_as_generated():
    src = scene()
    new_background = scene(background="black", colour="blue")
    mask = edited_mask(new_background, src, 0.12)
    out, _ = restore_pixels(new_background, src, 0.12)
    # the new background counts as edited everywhere; only the unchanged object may come back
    background = (new_background - src).abs().amax(1)[0] > 0.5
    assert mask[0, 0][background].min() > 0.999
    assert torch.allclose(out[0][:, background], new_background[0][:, background], atol=1e-3)


def test_the_mask_scales_with_the_image_and_bad_arguments_are_refused():
    src = scene()
    edited = scene(colour="red")
    small = edited_mask(edited, src, 0.12)
    big = edited_mask(
        torch.nn.functional.interpolate(edited, scale_factor=4, mode="nearest"),
        torch.nn.functional.interpolate(src, scale_factor=4, mode="nearest"),
        0.12,
    )
    # the same fraction of the image counts as edited at 64 and 256 px
    assert abs(float(small.mean()) - float(big.mean())) < 0.02
    with pytest.raises(ValueError, match="threshold must be > 0"):
        edited_mask(edited, src, 0.0)
    with pytest.raises(ValueError, match="same size"):
        edited_mask(edited, src[..., :32, :32], 0.12)


def test_edit_restores_the_unedited_region_and_records_it(tiny):
    img = render(Scene("square", "green", "white", x0=10, y0=14, side=30, texture_seed=3))[0]
    # the tiny random model draws far from the input: a high threshold leaves something to restore
    kw = dict(method="sdedit", seed=0, strength=0.1, num_inference_steps=4, progress=False)
    plain = edit(tiny, img, "a red square on a white background", **kw)
    kept = edit(tiny, img, "a red square on a white background", restore_unedited=1.0, **kw)
    assert plain.recipe["config"]["restore_unedited"] == 0.0
    assert kept.recipe["config"]["restore_unedited"] == 1.0
    src_pil = img.convert("RGB").resize(kept.image.size)
    src = np.asarray(src_pil, dtype=np.int16)
    a = np.abs(np.asarray(plain.image, dtype=np.int16) - src)
    b = np.abs(np.asarray(kept.image, dtype=np.int16) - src)
    # where the generated pixels barely differ from the input, the input's own come back ...
    assert b.mean() < a.mean()
    assert (b == 0).mean() > (a == 0).mean()
    # ... and the output is exactly the restore of what was generated (up to 8-bit rounding)
    want, mask = restore_pixels(pil_to_tensor(plain.image), pil_to_tensor(src_pil), 1.0)
    assert (pil_to_tensor(kept.image) - want).abs().max() < 3 / 255
    assert 0 < float(mask.mean()) < 1  # some pixels kept as generated, some restored
    assert isinstance(kept.image, Image.Image)


def test_best_of_n_ranks_the_candidates_as_generated_and_returns_them_restored(tiny):
    """Restored, most candidates would copy their best-matching half from the input and tie on the
    fidelity term; so the ranking sees the generated pixels, and every candidate comes back
    restored (the pick among them)."""
    img = render(Scene("circle", "blue", "gray", x0=12, y0=20, side=26, texture_seed=7))[0]
    kw = dict(
        method="sdedit", seed=1, strength=0.2, num_inference_steps=4, candidates=3, progress=False
    )
    plain = edit(tiny, img, "a red circle on a gray background", **kw)
    kept = edit(tiny, img, "a red circle on a gray background", restore_unedited=0.5, **kw)
    assert kept.ranking.order == plain.ranking.order
    assert kept.ranking.scores == plain.ranking.scores
    src = pil_to_tensor(img.convert("RGB").resize(kept.image.size))
    for a, b in zip(plain.candidates, kept.candidates, strict=True):
        want = restore_pixels(pil_to_tensor(a), src, 0.5)[0]
        # the restore of the generated candidate, up to the 8-bit rounding of ``a``
        assert (pil_to_tensor(b) - want).abs().max() < 3 / 255
    assert np.array_equal(
        np.asarray(kept.image), np.asarray(kept.candidates[kept.ranking.order[0]])
    )
    assert not np.array_equal(np.asarray(kept.image), np.asarray(plain.image))


def test_keep_outside_puts_the_input_back_outside_a_latent_region():
    src = scene()
    edited = scene(colour="red") + 0.2  # recoloured, and every pixel's tone shifted
    region = torch.zeros(1, 1, 16, 16)
    region[:, :, 4:12, 2:10] = 1  # latent cells 4 px each: rows 16-47, columns 8-39
    out = keep_outside(edited, src, region)
    assert out.shape == src.shape and out.dtype == src.dtype

    def close(a, b):
        return torch.allclose(a, b, atol=1e-6)

    assert close(out[..., 20:44, 12:36], edited[..., 20:44, 12:36])  # inside, past the edge
    assert close(out[..., :12, :], src[..., :12, :])  # above, past the feathered edge
    assert close(out[..., :, 44:], src[..., :, 44:])  # right of it
    edge = out[..., 16, 20:30] - src[..., 16, 20:30]  # on the edge: part of each
    assert (edge.abs() > 0.01).all() and (edge.abs() < 0.19).all()
