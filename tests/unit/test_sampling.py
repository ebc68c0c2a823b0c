"""DDIM sampling and inversion: exact round trips with stub noise predictors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from imagic_kit.sampling import ddim_invert, ddim_sample, schedule


class StubUNet(torch.nn.Module):
    """Predicts a noise that depends on t only (and, for v-prediction, the v that implies it).

    With such a model the DDIM update is exactly invertible, so inversion then sampling must
    give back the input latent.
    """

    def __init__(self, real, alphas_cumprod, prediction_type):
        super().__init__()
        self.config = real.config
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.abar = alphas_cumprod
        self.prediction_type = prediction_type

    def eps(self, shape, t):
        g = torch.Generator().manual_seed(int(t[0]))
        return torch.randn(shape, generator=g)

    def forward(self, x, t, encoder_hidden_states=None, return_dict=False):
        eps = self.eps(x.shape, t) + 0.1 * encoder_hidden_states.mean()
        if self.prediction_type == "v_prediction":
            a = self.abar[t.long()].view(-1, 1, 1, 1)
            return ((eps - (1 - a).sqrt() * x) / a.sqrt(),)
        return (eps,)


def stubbed(bb):
    stub = StubUNet(bb.unet, bb.scheduler.alphas_cumprod, bb.prediction_type)
    return dataclasses.replace(bb, unet=stub, _uncond_cache={})


@pytest.mark.parametrize("which", ["tiny", "tiny_v"])
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_inversion_then_sampling_is_exact_round_trip(request, which, strength):
    bb = stubbed(request.getfixturevalue(which))
    z0 = torch.randn(bb.latent_shape(2), generator=torch.Generator().manual_seed(0))
    cond = bb.encode_prompt(["a red circle", "a blue square"])
    traj = ddim_invert(bb, z0, cond, num_inference_steps=25, strength=strength)
    assert len(traj) == round(25 * strength) + 1
    assert not torch.allclose(traj[-1], z0, atol=0.1)  # it really moved
    back = ddim_sample(
        bb, traj[-1], cond, num_inference_steps=25, guidance_scale=1.0, strength=strength
    )
    torch.testing.assert_close(back, z0, atol=1e-4, rtol=1e-4)


def test_round_trip_with_per_step_condition_and_guidance(tiny):
    bb = stubbed(tiny)
    z0 = torch.randn(bb.latent_shape(1), generator=torch.Generator().manual_seed(1))
    embs = {i: bb.encode_prompt("a red circle") * (1 + i / 10) for i in range(10)}
    seen = []

    def cond(i, t):
        seen.append((i, t))
        return embs[i]

    traj = ddim_invert(bb, z0, cond, num_inference_steps=10, guidance_scale=3.0)
    back = ddim_sample(bb, traj[-1], cond, num_inference_steps=10, guidance_scale=3.0)
    torch.testing.assert_close(back, z0, atol=1e-4, rtol=1e-4)
    ts = schedule(bb, 10).timesteps
    assert sorted({i for i, _ in seen}) == list(range(10))
    assert all(ts[i] == t for i, t in seen)


@pytest.mark.parametrize("which", ["tiny", "tiny_v"])
def test_real_tiny_model_samples_finite(request, which):
    bb = request.getfixturevalue(which)
    g = torch.Generator().manual_seed(0)
    x = bb.randn(bb.latent_shape(1), g)
    out = ddim_sample(
        bb, x, bb.encode_prompt("a red circle"), num_inference_steps=5, guidance_scale=4.0
    )
    assert out.shape == bb.latent_shape(1) and torch.isfinite(out).all()


def test_stochastic_ddim_is_seeded(tiny):
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = tiny.randn(tiny.latent_shape(1), g)
        return ddim_sample(
            tiny, x, tiny.encode_prompt("a circle"), num_inference_steps=5, eta=1.0, generator=g
        )

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_schedule_strength_and_errors(tiny):
    s = schedule(tiny, 50, 0.6)
    assert len(s.active) == 30 and s.timesteps == sorted(s.timesteps, reverse=True)
    with pytest.raises(ValueError):
        schedule(tiny, 0)
    with pytest.raises(ValueError):
        schedule(tiny, 10, 0.0)
