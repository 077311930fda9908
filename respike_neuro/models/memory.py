"""Activation checkpointing that is safe for BatchNorm.

The paper names training memory as ReSpike's main limitation. Recomputing each block in the
backward pass instead of storing its activations trades ~30% compute for most of the activation
memory. torch.utils.checkpoint re-runs the forward pass, which would update BatchNorm running
statistics twice; during the recomputation BN momentum is set to 0 so the statistics stay exactly
as one forward pass left them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _frozen_bn_statistics(module: nn.Module) -> Iterator[None]:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        (m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
        for m in norms
    ]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def maybe_checkpoint(enabled: bool, module: nn.Module, *args: Any) -> Any:
    """module(*args), recomputed in the backward pass when `enabled` and gradients are on."""
    if not (enabled and torch.is_grad_enabled() and module.training):
        return module(*args)
    return checkpoint(
        module,
        *args,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_statistics(module)),
    )
