"""sgd_in_backward: the SGD update run inside backward equals optimizer.step() after it."""

from __future__ import annotations

import warnings

import pytest
import torch
from respike_tests_helpers import lively_model

from respike_neuro.sgd_in_backward import SGDInBackward, fits_in_backward


def _clip(seed: int) -> torch.Tensor:
    return 0.5 * torch.randn(2, 8, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _train(in_backward: bool, steps: int = 3, **sgd):
    """`steps` SGD steps of the small hybrid with a decaying LR; parameters and momentum after them."""
    model = lively_model(seed=3).train()
    opt = torch.optim.SGD(model.parameters(), **sgd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    labels = torch.tensor([1, 4])
    with SGDInBackward(opt) if in_backward else torch.enable_grad():
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(_clip(step)), labels).backward()
            opt.step()  # after SGDInBackward: nothing left to update
            sched.step()
            if in_backward:
                assert all(p.grad is None for p in model.parameters())
    params = [p.detach().clone() for p in model.parameters()]
    momenta = [opt.state[p].get("momentum_buffer") for p in model.parameters()]
    return params, momenta


@pytest.mark.parametrize(
    "sgd",
    [
        dict(lr=0.05, momentum=0.9, weight_decay=1e-3),
        dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
        dict(lr=0.05, momentum=0.9, dampening=0.1, maximize=True),
        dict(lr=0.05),
    ],
    ids=["momentum-wd", "nesterov", "dampening-maximize", "plain"],
)
def test_parameters_and_momentum_equal_the_plain_step(sgd):
    plain, plain_m = _train(False, **sgd)
    fused, fused_m = _train(True, **sgd)
    for a, b in zip(plain, fused, strict=True):
        assert torch.equal(a, b)  # the same update function on the same gradients: bit for bit
    for a, b in zip(plain_m, fused_m, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_the_scheduler_and_a_loaded_state_are_followed():
    """lr is read at update time, from the groups load_state_dict put in place."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.5)
    with SGDInBackward(opt):
        other = torch.optim.SGD(model.parameters(), lr=0.25, momentum=0.5)
        opt.load_state_dict(other.state_dict())
        before = model.weight.detach().clone()
        x = torch.ones(1, 3)
        model(x).sum().backward()
        assert torch.allclose(model.weight, before - 0.25 * torch.ones(2, 3))  # lr 0.25; momentum = grad
        assert "momentum_buffer" in opt.state[model.weight]


def test_no_scheduler_warning_and_removal_restores_the_plain_step():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would raise
        with SGDInBackward(opt) as hooks:
            model(torch.ones(1, 3)).sum().backward()
            opt.step()
            sched.step()
        assert hooks.handles == []
    model(torch.ones(1, 3)).sum().backward()
    assert model.weight.grad is not None  # kept for optimizer.step() again


def test_other_optimizers_and_options_are_refused():
    params = list(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(TypeError, match="needs a torch.optim.SGD, got Adam"):
        SGDInBackward(torch.optim.Adam(params))
    with pytest.raises(ValueError, match="differentiable=True would not be honoured"):
        SGDInBackward(torch.optim.SGD(params, lr=0.1, differentiable=True))


@pytest.mark.parametrize(
    "kw, reason",
    [
        (dict(grad_clip=1.0), "global norm"),
        (dict(accum_steps=2), "micro-batches"),
        (dict(distributed=True), "DDP"),
        (dict(grad_scaler=True), "GradScaler"),
        ({}, "as soon as"),
    ],
)
def test_fits_in_backward_says_why(kw, reason):
    args = dict(grad_clip=0.0, accum_steps=1, distributed=False, grad_scaler=False) | kw
    fits, why = fits_in_backward(**args)
    assert fits == (kw == {}) and reason in why
