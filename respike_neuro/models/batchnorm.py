"""BatchNorm over a time-major spiking sequence (T, N, C, H, W), with the authors' statistics.

The authors step their SNN through time in a Python loop, so in training every BatchNorm is
called once per timestep: timestep t is normalised with ITS OWN batch statistics (over N, H, W),
and the running statistics take T sequential momentum updates per forward,

    r <- (1 - m) r + m s_t      for t = 0 .. T-1     (s_t: mean, or unbiased variance, of step t)

Pooling the statistics over all timesteps (time folded into the batch) is another network in
train mode: 15 % (ResNet-18) / 3 % (ResNet-50) relative logit difference and 10-17 % flipped
spikes after one forward with the authors' weights. Eval mode uses the running statistics, so
both modes agree there, and BN folding for export is unchanged.

Here the T calls become one: timestep t's channels are laid side by side as T*C channels of one
(N, T*C, H, W) batch, so torch's fused batch_norm kernel computes all per-step statistics at
once (its running buffers, set with momentum 1, hand back the per-step mean and unbiased
variance), and the T running-statistic updates are applied to (C,)-sized vectors afterwards.
Checked against a per-timestep loop of nn.BatchNorm2d calls in tests/models/test_batchnorm.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_STATS = ("per_timestep", "folded")


def batch_norm_per_timestep(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Train-mode `bn` on (T, N, C, H, W) with statistics per timestep; updates bn's running stats."""
    if x.dim() != 5 or x.shape[2] != bn.num_features:
        raise ValueError(f"expected (T, N, {bn.num_features}, H, W), got {tuple(x.shape)}")
    if isinstance(bn, nn.SyncBatchNorm):
        raise ValueError("per-timestep statistics are not implemented for SyncBatchNorm")
    t, n, c = x.shape[:3]
    batch = x.transpose(0, 1).reshape(n, t * c, *x.shape[3:])
    weight = bn.weight.repeat(t) if bn.weight is not None else None
    bias = bn.bias.repeat(t) if bn.bias is not None else None
    track = bn.track_running_stats and bn.running_mean is not None
    step_mean = torch.zeros(t * c, dtype=bn.running_mean.dtype, device=x.device) if track else None
    step_var = torch.ones(t * c, dtype=bn.running_var.dtype, device=x.device) if track else None
    out = F.batch_norm(batch, step_mean, step_var, weight, bias, True, 1.0, bn.eps)
    if track:
        _update_running_stats(bn, step_mean.view(t, c), step_var.view(t, c))
    return out.view(n, t, c, *x.shape[3:]).transpose(0, 1)


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm2d, means: torch.Tensor, variances: torch.Tensor) -> None:
    """The T sequential updates nn.BatchNorm2d would make, called once per timestep."""
    for mean, var in zip(means, variances):
        bn.num_batches_tracked.add_(1)
        m = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        bn.running_mean.mul_(1.0 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1.0 - m).add_(var, alpha=m)
