"""BatchNorm over a time-major spiking sequence (T, N, C, H, W), with the authors' statistics.

The authors step their SNN through time in a Python loop, so in training every BatchNorm is
called once per timestep: timestep t is normalised with ITS OWN batch statistics (over N, H, W),
and the running statistics take T sequential momentum updates per forward,

    r <- (1 - m) r + m s_t      for t = 0 .. T-1     (s_t: mean, or unbiased variance, of step t)

Pooling the statistics over all timesteps (time folded into the batch) is another network in
train mode: 15 % (ResNet-18) / 3 % (ResNet-50) relative logit difference and 10-17 % flipped
spikes after one forward with the authors' weights. Eval mode uses the running statistics, so
both modes agree there, and BN folding for export is unchanged.

Here the T calls stay T calls of torch's own batch-norm kernels (aten `native_batch_norm` and its
backward), each on the contiguous slice x[t] and writing straight into slice t of one output (and,
in backward, of one input gradient): no transpose to a (N, T*C, H, W) batch and back, which cost
two copies of every activation each way (at 3 x 4 x 64 x 112^2, 118 -> 60 ms forward + backward
here). Outputs and input gradients are bit for bit those of T nn.BatchNorm2d calls; the weight and
bias gradients are their sums over t, and the running statistics take the kernel's own T updates,
bit for bit (tests/models/test_batchnorm.py).
"""

from __future__ import annotations

import torch
from torch import nn

BN_STATS = ("per_timestep", "folded")

_aten = torch.ops.aten


class _BatchNormPerStep(torch.autograd.Function):
    """Train-mode batch norm of each x[t] with its own statistics, updating the running buffers (or
    None) with momenta[t] as nn.BatchNorm2d's call t would."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momenta, eps):
        stats_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        out = torch.empty_like(x)
        save_mean = x.new_empty((x.shape[0], x.shape[2]), dtype=stats_dtype)
        save_invstd = torch.empty_like(save_mean)
        for t, momentum in enumerate(momenta):
            _aten.native_batch_norm.out(
                x[t], weight, bias, running_mean, running_var, True, momentum, eps,
                out=out[t], save_mean=save_mean[t], save_invstd=save_invstd[t],
            )  # fmt: skip
        ctx.save_for_backward(x, weight, save_mean, save_invstd)
        ctx.eps = eps
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, save_mean, save_invstd = ctx.saved_tensors
        if grad_out.stride() != x.stride():  # lay it out as x, slice by slice alike
            grad_out = torch.empty_like(x).copy_(grad_out)
        grad_x = torch.empty_like(x)
        grad_w = torch.empty_like(save_mean)  # per step; their sum is the parameter's gradient
        grad_b = torch.empty_like(save_mean)
        for t in range(x.shape[0]):
            _aten.native_batch_norm_backward.out(
                grad_out[t], x[t], weight, None, None, save_mean[t], save_invstd[t], True, ctx.eps,
                [True, True, True], out0=grad_x[t], out1=grad_w[t], out2=grad_b[t],
            )  # fmt: skip
        grad_params = (grad_w.sum(0), grad_b.sum(0)) if weight is not None else (None, None)
        return grad_x, *grad_params, None, None, None, None


def batch_norm_per_timestep(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Train-mode `bn` on (T, N, C, H, W) with statistics per timestep; updates bn's running stats."""
    if x.dim() != 5 or x.shape[2] != bn.num_features:
        raise ValueError(f"expected (T, N, {bn.num_features}, H, W), got {tuple(x.shape)}")
    if isinstance(bn, nn.SyncBatchNorm):
        raise ValueError("per-timestep statistics are not implemented for SyncBatchNorm")
    track = bn.track_running_stats and bn.running_mean is not None
    momenta = [0.0 if bn.momentum is None else bn.momentum] * x.shape[0]
    if track and bn.num_batches_tracked is not None:
        for t in range(x.shape[0]):  # nn.BatchNorm2d's bookkeeping, once per call
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                momenta[t] = 1.0 / float(bn.num_batches_tracked)
    running = (bn.running_mean, bn.running_var) if track else (None, None)
    return _BatchNormPerStep.apply(x, bn.weight, bn.bias, *running, momenta, bn.eps)
