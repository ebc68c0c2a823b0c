from __future__ import annotations

import pytest
import torch

from imagic_kit.errors import NonFiniteLossError
from imagic_kit.optim import lr_schedule, optimize


def test_minimises_a_quadratic():
    x = torch.tensor([3.0, -2.0], requires_grad=True)
    losses = optimize([x], lambda s: (x**2).sum(), steps=200, lr=0.1)
    assert losses[-1] < 1e-3 and len(losses) == 200


def test_nan_loss_stops_with_clear_error():
    x = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(NonFiniteLossError, match="lower the learning rate"):
        optimize([x], lambda s: (x * float("nan")).sum(), steps=5, lr=0.1, what="the embedding")


def test_half_precision_trainables_are_refused():
    x = torch.zeros(2, dtype=torch.float16, requires_grad=True)
    with pytest.raises(TypeError, match="float32"):
        optimize([x], lambda s: x.float().sum(), steps=1, lr=0.1)


def test_early_stop_and_lr_schedule():
    x = torch.tensor([1.0], requires_grad=True)
    lrs = []
    losses = optimize(
        [x],
        lambda s: (x**2).sum(),
        steps=50,
        lr=0.1,
        lr_fn=lambda s: lrs.append(0.1 * (1 - s / 100)) or lrs[-1],
        stop_fn=lambda s, v: s >= 4,
    )
    assert len(losses) == 5 and lrs[1] < lrs[0]


def test_callback_receives_progress():
    events = []
    from imagic_kit.progress import ProgressOptions

    x = torch.tensor([1.0], requires_grad=True)
    optimize(
        [x],
        lambda s: (x**2).sum(),
        steps=3,
        lr=0.1,
        stage="emb",
        progress=ProgressOptions(enabled=False, callback=lambda *a: events.append(a)),
    )
    assert [e[:3] for e in events] == [("emb", 1, 3), ("emb", 2, 3), ("emb", 3, 3)]
    assert "loss" in events[0][3]


def test_cosine_schedule_decays_from_lr_to_zero():
    assert lr_schedule("constant", 1e-3, 100) is None
    f = lr_schedule("cosine", 1e-3, 100)
    lrs = [f(s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[50] == pytest.approx(5e-4)
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and 0 < lrs[-1] < 1e-5
    with pytest.raises(ValueError, match="lr schedule 'linear' is unknown"):
        lr_schedule("linear", 1e-3, 100)
