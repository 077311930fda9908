"""Training memory: BatchNorm-safe activation checkpointing, and lossless savings (below).

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
import torch.nn.functional as F
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


# -- lossless savings: what the backward pass keeps, without recomputing anything ------------------
#
# Two ops of the network save more for backward than their gradient needs:
# - a conv whose input is spikes saves that input as float32, though every value is exactly 0 or 1:
#   `spike_conv2d` keeps it as 1 byte (bool) and rebuilds the float tensor in backward, then calls
#   the same aten convolution_backward the plain conv would: the gradients are bit-identical;
# - AvgPool2d saves its whole input, though its backward reads only the input's shape (the MS-ResNet
#   downsample shortcut, the fusion's pooling of the SNN map and of the ANN context): `avg_pool2d`
#   keeps the shape alone.
# Both apply only where autograd records (training); elsewhere the plain ops run. `plain_backward()`
# switches them off (tests compare the two, benchmarks measure the difference).

_LEAN = [True]


@contextlib.contextmanager
def plain_backward(plain: bool = True) -> Iterator[None]:
    """Within the block, spike convs and average pools save what plain torch saves."""
    saved = _LEAN[0]
    _LEAN[0] = not plain
    try:
        yield
    finally:
        _LEAN[0] = saved


def _lean_here(x: torch.Tensor) -> bool:
    recording = torch.is_grad_enabled() and x.requires_grad
    return _LEAN[0] and recording and not torch.is_autocast_enabled(x.device.type)


class _SpikeConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spikes, weight, bias, stride, padding, dilation, groups):  # noqa: PLR0913
        ctx.save_for_backward(spikes.to(torch.bool), weight)
        ctx.conf = (stride, padding, dilation, groups, spikes.dtype, None if bias is None else bias.shape)
        return F.conv2d(spikes, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        packed, weight = ctx.saved_tensors
        stride, padding, dilation, groups, dtype, bias_shape = ctx.conf
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[1], bias_shape is not None and needs[2]]
        gi, gw, gb = torch.ops.aten.convolution_backward(
            grad, packed.to(dtype), weight, bias_shape, stride, padding, dilation, False, [0, 0], groups, mask
        )
        return gi, gw, gb, None, None, None, None


def spike_conv2d(conv: nn.Conv2d, spikes: torch.Tensor) -> torch.Tensor:
    """conv(spikes) for a 0/1 input; in training its saved input is 1 byte per value instead of 4.

    Only for a plain nn.Conv2d without hooks (a subclass or a hooked conv runs as itself)."""
    if (
        type(conv) is not nn.Conv2d
        or conv.padding_mode != "zeros"
        or conv._forward_hooks
        or conv._forward_pre_hooks
        or not _lean_here(spikes)
    ):
        return conv(spikes)
    return _SpikeConv2d.apply(
        spikes, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
    )


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel):
        ctx.meta = (x.shape, x.stride(), x.dtype, x.device, kernel)
        return F.avg_pool2d(x, kernel)

    @staticmethod
    def backward(ctx, grad):
        shape, stride, dtype, device, kernel = ctx.meta
        # avg_pool2d_backward reads only the sizes and memory format of `self`: an unwritten tensor
        like = torch.empty_strided(shape, stride, dtype=dtype, device=device)
        k = [kernel, kernel]
        return torch.ops.aten.avg_pool2d_backward(grad, like, k, k, [0, 0], False, True, None), None


def avg_pool2d(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """F.avg_pool2d(x, kernel) (stride = kernel, no padding); in training it saves no activation."""
    if not _lean_here(x):
        return F.avg_pool2d(x, kernel)
    return _AvgPool2d.apply(x, kernel)
