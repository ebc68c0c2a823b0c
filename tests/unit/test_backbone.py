"""Backbone helpers: constants from configs, guidance, prediction types, training."""

from __future__ import annotations

import pytest
import torch

from imagic_kit.lora import LoraSpec, add_lora, remove_lora
from imagic_kit.optim import denoising_loss, importance_timesteps, optimize, timestep_weights


def test_constants_come_from_configs(tiny, tiny_v):
    assert tiny.vae_scale_factor == 4 and tiny.resolution == 64 and tiny.latent_channels == 4
    assert (
        tiny.num_train_timesteps == 1000 and tiny.scaling_factor == tiny.vae.config.scaling_factor
    )
    assert tiny.prediction_type == "epsilon" and tiny_v.prediction_type == "v_prediction"
    assert tiny.latent_shape(2) == (2, 4, 16, 16)


def test_vae_round_trip_shapes(tiny):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = tiny.encode_latents(x)
    assert z.shape == (2, 4, 16, 16)
    y = tiny.decode_latents(z)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


def test_guidance_is_one_batched_formula(tiny):
    g = torch.Generator().manual_seed(0)
    x = tiny.randn(tiny.latent_shape(1), g)
    c, u = tiny.encode_prompt("a red circle"), tiny.uncond_embedding()
    t = 500
    oc, ou = tiny.model_output(x, t, c), tiny.model_output(x, t, u)
    torch.testing.assert_close(tiny.noise_pred(x, t, c, u, 1.0), oc)
    torch.testing.assert_close(
        tiny.noise_pred(x, t, c, u, 5.0), ou + 5.0 * (oc - ou), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("which", ["tiny", "tiny_v"])
def test_training_target_inverts_to_x0_and_eps(request, which):
    bb = request.getfixturevalue(which)
    g = torch.Generator().manual_seed(0)
    x0, eps = bb.randn((3, 4, 16, 16), g), bb.randn((3, 4, 16, 16), g)
    t = torch.tensor([10, 500, 990])
    xt = bb.add_noise(x0, eps, t)
    x0_hat, eps_hat = bb.to_x0_eps(xt, bb.training_target(x0, eps, t), t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["tiny", "tiny_v"])
@pytest.mark.parametrize("weighting", ["eps", "v", "x0"])
def test_loss_weighting_turns_the_native_loss_into_the_chosen_one(request, which, weighting):
    """w(t) * |native error|^2 == |error in the chosen parameterisation|^2, for any model output."""
    bb = request.getfixturevalue(which)
    g = torch.Generator().manual_seed(0)
    x0, eps, out = (bb.randn((3, 4, 16, 16), g) for _ in range(3))
    t = torch.tensor([10, 500, 990])
    xt = bb.add_noise(x0, eps, t)
    native = (out - bb.training_target(x0, eps, t)).pow(2).flatten(1).sum(1)
    x0_hat, eps_hat = bb.to_x0_eps(xt, out, t)
    abar = bb.alphas_cumprod[t].float()
    wanted = {
        "eps": (eps_hat - eps).pow(2).flatten(1).sum(1),
        "v": (
            abar.sqrt().view(-1, 1, 1, 1) * (eps_hat - eps)
            - (1 - abar).sqrt().view(-1, 1, 1, 1) * (x0_hat - x0)
        )
        .pow(2)
        .flatten(1)
        .sum(1),
        "x0": (x0_hat - x0).pow(2).flatten(1).sum(1),
    }[weighting]
    w = timestep_weights(bb, t, weighting)
    if w is None:  # the native loss already is the chosen one
        torch.testing.assert_close(native, wanted, rtol=1e-3, atol=1e-4)
    else:
        torch.testing.assert_close(w * native, wanted, rtol=1e-3, atol=1e-4)
    capped = timestep_weights(bb, t, weighting, cap=5.0)
    uncapped = w if w is not None else torch.ones(3)
    assert capped is not None and torch.all(capped <= uncapped + 1e-6)
    with pytest.raises(ValueError, match="unknown"):
        timestep_weights(bb, t, "snr")


@pytest.mark.parametrize("which", ["tiny", "tiny_v"])
def test_both_prediction_types_train(request, which):
    """A LoRA and a text embedding fitted on one latent lower the (fixed-noise) denoising loss."""
    bb = request.getfixturevalue(which)
    z0 = bb.encode_latents(torch.rand(1, 3, 64, 64) * 2 - 1)
    emb = bb.encode_prompt("a red circle").float().clone().requires_grad_(True)
    params = add_lora(bb.unet, LoraSpec(rank=4, alpha=4))
    try:

        def loss_fn(step):  # the same noise and timesteps every step: a fixed objective
            return denoising_loss(
                bb, z0.expand(4, -1, -1, -1), emb, torch.Generator().manual_seed(0)
            )

        losses = optimize([emb, *params], loss_fn, steps=40, lr=2e-2)
    finally:
        remove_lora(bb.unet)
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in params)


def test_overlong_prompt_is_truncated_with_warning(tiny):
    long = " ".join(["red circle"] * 20)
    with pytest.warns(UserWarning, match="truncated"):
        e = tiny.encode_prompt(long)
    assert e.shape == (1, tiny.max_tokens, 32)


def test_unknown_word_warns_but_works(tiny):
    with pytest.warns(UserWarning, match="zebra"):
        e = tiny.encode_prompt("a zebra")
    assert torch.isfinite(e).all()


def test_noise_is_drawn_on_cpu_generators(tiny):
    a = tiny.randn((2, 3), torch.Generator().manual_seed(7))
    b = torch.randn((2, 3), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.cpu(), b)


@pytest.mark.parametrize("which", ["tiny", "tiny_v"])
def test_importance_timesteps_follow_the_loss_weights(request, which):
    """Timesteps drawn in proportion to the v weights (capped), one per stratum of the batch: the
    share of the noisy half matches the weights' share, each batch is ordered and spans the
    distribution, the same generator gives the same draw, and a range is respected."""
    bb = request.getfixturevalue(which)
    draws = [importance_timesteps(bb, 4, torch.Generator().manual_seed(s), 0, None, "v", 20.0)
             for s in range(500)]  # fmt: skip
    t = torch.stack(draws)
    assert t.shape == (500, 4) and t.min() >= 0 and t.max() < bb.num_train_timesteps
    assert torch.all(t[:, 1:] >= t[:, :-1])  # one from each quarter of the distribution, in order
    all_t = torch.arange(bb.num_train_timesteps)
    w = timestep_weights(bb, all_t, "v", 20.0)
    w = torch.ones(len(all_t)) if w is None else w
    want = float(w[500:].sum() / w.sum())
    got = float((t >= 500).float().mean())
    assert abs(got - want) < 0.03, (got, want)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    assert torch.equal(
        importance_timesteps(bb, 8, g(), 0, None, "v", 20.0),
        importance_timesteps(bb, 8, g(), 0, None, "v", 20.0),
    )
    ranged = importance_timesteps(bb, 64, g(), 200, 400, "v", 20.0)
    assert ranged.min() >= 200 and ranged.max() < 400


def test_importance_sampling_keeps_the_weighted_loss_and_lowers_its_noise(tiny_v):
    """At fixed weights the importance-sampled loss estimates the same objective as the
    normalised weighted loss over uniform timesteps (their means agree), with a smaller spread."""
    bb = tiny_v
    z0 = bb.encode_latents(torch.rand(1, 3, 64, 64) * 2 - 1).expand(4, -1, -1, -1)
    cond = bb.encode_prompt("a red circle")
    with torch.no_grad():
        losses = {
            mode: torch.tensor(
                [
                    float(
                        denoising_loss(
                            bb,
                            z0,
                            cond,
                            torch.Generator().manual_seed(s),
                            weighting="x0",
                            weight_cap=50.0,
                            timesteps=mode,
                        )
                    )
                    for s in range(150)
                ]
            )  # fmt: skip
            for mode in ("uniform", "importance")
        }
    u, i = losses["uniform"], losses["importance"]
    assert abs(float(u.mean() - i.mean())) < 0.25 * float(u.mean()), (u.mean(), i.mean())
    assert float(i.std()) < float(u.std()), (u.std(), i.std())
    with pytest.raises(ValueError, match="timestep sampling"):
        denoising_loss(bb, z0, cond, torch.Generator(), timesteps="stratified")
