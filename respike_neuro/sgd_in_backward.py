"""SGD's update applied to each parameter inside the backward pass, as soon as its gradient is complete.

Why: a plain step holds every gradient (as large as the model: 115 MB at the reference config)
until `optimizer.step()`, and the largest ones (stage 4 of both branches, the last fusions) are
complete at the very start of backward, when the activations are at their peak. Updating a
parameter the moment autograd has accumulated its gradient, then dropping that gradient, means
the gradients are never all alive at once. This is the pattern of PyTorch's "optimizer step in
backward" tutorial (`Tensor.register_post_accumulate_grad_hook`); what is ours is keeping the one
`torch.optim.SGD` as the owner of the hyper-parameters and momentum buffers, so its state_dict,
the LR scheduler and checkpoints are those of the plain step. The update itself is torch's
`torch.optim.sgd.sgd`, the function `SGD.step()` runs: parameters and momentum equal the plain
step's (tests/test_sgd_in_backward.py).

It does not fit a step that needs every gradient before any update: gradient clipping (a global
norm), accumulation over micro-batches, GradScaler's inf check, DDP's all-reduce.
`fits_in_backward` says why not, in one line.
"""

from __future__ import annotations

import importlib

import torch

_sgd = importlib.import_module("torch.optim.sgd").sgd  # torch.optim's package namespace hides the module


class SGDInBackward:
    """While installed, backward() updates every parameter of `optimizer` and sets its .grad to None;
    optimizer.step() afterwards finds no gradient and does nothing (calling it keeps LR schedulers
    content). `remove()` (or leaving the `with`) restores the plain step."""

    def __init__(self, optimizer: torch.optim.SGD) -> None:
        if type(optimizer) is not torch.optim.SGD:
            raise TypeError(f"SGDInBackward needs a torch.optim.SGD, got {type(optimizer).__name__}")
        for option in ("fused", "differentiable"):
            if any(group.get(option) for group in optimizer.param_groups):
                raise ValueError(
                    f"SGDInBackward runs torch's single-tensor SGD: {option}=True would not be honoured"
                )
        self.optimizer = optimizer
        self.handles = [
            p.register_post_accumulate_grad_hook(self._step_one(i))
            for i, group in enumerate(optimizer.param_groups)
            for p in group["params"]
            if p.requires_grad
        ]

    def _step_one(self, group_index: int):
        def step(p: torch.Tensor) -> None:
            # looked up now: the scheduler sets lr there, and load_state_dict replaces the groups
            group = self.optimizer.param_groups[group_index]
            state = self.optimizer.state[p]
            momentum = [state.get("momentum_buffer")]
            with torch.no_grad():
                # sgd's first two operations, -grad and grad + weight_decay * p, done in place on the
                # gradient, which is dropped below: the same values without a parameter-sized copy
                grad = p.grad.neg_() if group["maximize"] else p.grad
                if group["weight_decay"] != 0:
                    grad.add_(p, alpha=group["weight_decay"])
                _sgd(
                    [p],
                    [grad],
                    momentum,
                    foreach=False,
                    weight_decay=0.0,
                    momentum=group["momentum"],
                    lr=group["lr"],
                    dampening=group["dampening"],
                    nesterov=group["nesterov"],
                    maximize=False,
                )
            if group["momentum"] != 0:
                state["momentum_buffer"] = momentum[0]
            p.grad = None

        return step

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> SGDInBackward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def fits_in_backward(
    *, grad_clip: float, accum_steps: int, distributed: bool, grad_scaler: bool
) -> tuple[bool, str]:
    """Whether the SGD update can run inside backward for this step, and if not, why."""
    if grad_clip > 0:
        return False, "gradient clipping needs the global norm of all gradients first"
    if accum_steps > 1:
        return False, "accumulating micro-batches needs the summed gradient first"
    if distributed:
        return False, "DDP all-reduces gradients after autograd hands them over"
    if grad_scaler:
        return False, "fp16's GradScaler checks every gradient for inf first"
    return True, "each parameter is updated as soon as its gradient is complete"
