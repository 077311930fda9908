"""Training memory: what the backward pass keeps, and BatchNorm-safe recomputation.

The paper names training memory as ReSpike's main limitation. Two tools here:
- the lean ops (below): keep less for backward with the gradients of plain autograd, and never run
  a conv or a matmul twice but the two stems' 3-channel convs (`recompute_stem`); `train.lean_memory`
  (default on) and `plain_backward()` switch them;
- `maybe_checkpoint`: recompute whole blocks, convs included (~30% slower, `train.checkpoint_activations`).
torch.utils.checkpoint re-runs the forward pass, which would update BatchNorm running statistics
twice; during a recomputation BN momentum is set to 0 so the statistics stay exactly as one
forward pass left them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class _FrozenBNStatistics:
    """Within it, the BatchNorms of `module` leave their running statistics as they are. Re-entrant:
    checkpoint enters the same object for every recomputation (reading saved tensors recomputes)."""

    def __init__(self, module: nn.Module) -> None:
        self.norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self) -> None:
        self.saved = [
            (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
            for m in self.norms
        ]
        for m in self.norms:
            m.momentum = 0.0

    def __exit__(self, *exc: object) -> None:
        for m, (momentum, tracked) in zip(self.norms, self.saved):
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
        context_fn=lambda: (contextlib.nullcontext(), _FrozenBNStatistics(module)),
    )


def recompute_in_backward(fn: Any, x: torch.Tensor, norms: nn.Module) -> Any:
    """fn(x) keeping only x for backward: fn's own activations are recomputed there. For cheap
    elementwise work (a BatchNorm and a neuron) and the stems (`recompute_stem`), never for other
    convs; `norms` holds the BatchNorms fn updates, whose statistics stay as the one forward pass
    left them."""
    return checkpoint(
        fn,
        x,
        use_reentrant=False,
        preserve_rng_state=False,  # BN, LIF, ReLU and pooling draw no random numbers
        context_fn=lambda: (contextlib.nullcontext(), _FrozenBNStatistics(norms)),
    )


def recompute_stem(stem: nn.Module, frames: torch.Tensor, fn: Any = None) -> Any:
    """(fn or stem)(frames), fn: the stem and elementwise work on its output; in training only the
    frames are kept for backward.

    A stem's output is the widest map of its branch (64 channels at H/2: 38 MB for the SNN, 13 MB
    for the ANN at the reference config, plus the ANN's ReLU output and max-pool indices), while its
    conv, with 3 input channels, is the cheapest to run again: 27 multiply-adds per output value for
    the SNN's (a stage-1 conv: 576), 147 for the ANN's, over the key frames only."""
    fn = stem if fn is None else fn
    if stem.training and lean_here(frames, *stem.parameters()):
        return recompute_in_backward(fn, frames, stem)
    return fn(frames)


# -- the lean ops: what the backward pass keeps, at the gradients of plain autograd -------------------
#
# Four parts of the network keep more for backward than their gradient needs:
# - a conv whose input is spikes saves that input as float32, though every value is exactly 0 or 1:
#   `spike_conv2d` keeps it as 1 bit (`pack_bits`) and rebuilds the float tensor in backward, then calls
#   the same aten convolution_backward the plain conv would: the gradients are bit-identical;
# - AvgPool2d saves its whole input, though its backward reads only the input's shape (the MS-ResNet
#   downsample shortcut, the fusion's pooling of the SNN map and of the ANN context): `avg_pool2d`
#   keeps the shape alone;
# - the fusion's GEGLU feed-forward, out(a * GELU(gate)) with [a, gate] = proj(x), keeps a, gate,
#   GELU(gate) and the product (16 D-wide values per token): `geglu_out` keeps [a, gate] (8 D) and
#   recomputes GELU and the product in backward (elementwise; no matmul runs twice). Its output is
#   bit for bit plain torch's, its gradients equal to float rounding (the weight gradient's sums
#   may run in another order);
# - LIF2 keeps its membrane though BN1 keeps the conv output it comes from: `recompute_in_backward`
#   (used by snn.MSBlock) recomputes BN1 and LIF2 from that output in backward.
# All apply only where autograd records (training); elsewhere the plain ops run. `plain_backward()`
# switches them off (tests compare the two, benchmarks measure the difference).

_LEAN = [True]


@contextlib.contextmanager
def plain_backward(plain: bool = True) -> Iterator[None]:
    """Within the block, the network keeps for backward what plain autograd keeps (no lean ops)."""
    saved = _LEAN[0]
    _LEAN[0] = not plain
    try:
        yield
    finally:
        _LEAN[0] = saved


def lean_here(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """Whether the lean ops apply to x (an op on x and `params`): autograd records it, no autocast,
    not plain_backward()."""
    recording = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params))
    return _LEAN[0] and recording and not torch.is_autocast_enabled(x.device.type)


_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def _memory_order(stride: tuple[int, ...]) -> list[int]:
    """The dimensions from outermost to innermost in memory (N, H, W, C for a channels-last map):
    permuted so, a dense tensor is contiguous and flattening it is a view, not a copy."""
    return sorted(range(len(stride)), key=lambda d: -stride[d])


def pack_bits(spikes: torch.Tensor, *, numpy: bool | None = None) -> torch.Tensor:
    """A tensor of exact 0/1 values as bits, 8 to a byte, in its memory order (last byte zero-padded).
    On the CPU (numpy=None) numpy's packbits does it, ~4x faster here than the same in torch ops."""
    flat = spikes.permute(_memory_order(spikes.stride())).reshape(-1).to(torch.bool)
    if numpy or (numpy is None and flat.device.type == "cpu"):
        return torch.from_numpy(np.packbits(flat.numpy(), bitorder="little"))
    flat = F.pad(flat.to(torch.uint8), (0, -flat.numel() % 8))
    return (flat.view(-1, 8) * _BITS.to(flat.device)).sum(1, dtype=torch.uint8)


def unpack_bits(
    packed: torch.Tensor, shape: torch.Size, stride: tuple[int, ...], dtype: torch.dtype, *,
    numpy: bool | None = None,
) -> torch.Tensor:
    """pack_bits' inverse: a tensor of that shape, strides (memory format) and dtype."""
    if numpy or (numpy is None and packed.device.type == "cpu"):
        bits = torch.from_numpy(np.unpackbits(packed.numpy(), count=shape.numel(), bitorder="little"))
    else:
        bits = (packed.unsqueeze(1) & _BITS.to(packed.device)).ne(0).view(-1)[: shape.numel()]
    out = torch.empty_strided(shape, stride, dtype=dtype, device=packed.device)
    in_memory_order = out.permute(_memory_order(stride))
    in_memory_order.copy_(bits.view(in_memory_order.shape))
    return out


class _SpikeConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spikes, weight, bias, stride, padding, dilation, groups):  # noqa: PLR0913
        ctx.save_for_backward(pack_bits(spikes), weight)
        ctx.spikes = (spikes.shape, spikes.stride(), spikes.dtype)
        ctx.conf = (stride, padding, dilation, groups, None if bias is None else bias.shape)
        return F.conv2d(spikes, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        packed, weight = ctx.saved_tensors
        stride, padding, dilation, groups, bias_shape = ctx.conf
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[1], bias_shape is not None and needs[2]]
        spikes = unpack_bits(packed, *ctx.spikes)
        gi, gw, gb = torch.ops.aten.convolution_backward(
            grad, spikes, weight, bias_shape, stride, padding, dilation, False, [0, 0], groups, mask
        )
        return gi, gw, gb, None, None, None, None


def spike_conv2d(conv: nn.Conv2d, spikes: torch.Tensor) -> torch.Tensor:
    """conv(spikes) for a 0/1 input; in training its saved input is 1 bit per value instead of 32.

    Only for a plain nn.Conv2d without hooks (a subclass or a hooked conv runs as itself)."""
    if (
        type(conv) is not nn.Conv2d
        or conv.padding_mode != "zeros"
        or conv._forward_hooks
        or conv._forward_pre_hooks
        or not lean_here(spikes)
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
    if not lean_here(x):
        return F.avg_pool2d(x, kernel)
    return _AvgPool2d.apply(x, kernel)


class _GegluOut(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias):
        a, gate = h.chunk(2, dim=-1)
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(a * F.gelu(gate), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        a, gate = h.chunk(2, dim=-1)
        act = F.gelu(gate)
        grad_w = grad_b = grad_h = None
        flat = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = flat.t().mm((a * act).reshape(-1, act.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        if ctx.needs_input_grad[0]:
            grad_p = grad.matmul(weight)
            grad_h = torch.cat([grad_p * act, torch.ops.aten.gelu_backward(grad_p * a, gate)], dim=-1)
        return grad_h, grad_w, grad_b


def geglu_out(out: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """out(a * gelu(gate)) for h = [a, gate] (last dim); in training it keeps only h for backward."""
    if type(out) is not nn.Linear or out._forward_hooks or out._forward_pre_hooks or not lean_here(h):
        a, gate = h.chunk(2, dim=-1)
        return out(a * F.gelu(gate))
    return _GegluOut.apply(h, out.weight, out.bias)
