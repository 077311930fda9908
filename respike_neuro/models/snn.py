"""SNN branch: the spiking MS-ResNet (membrane shortcut) of ReSpike.

Tensors are time-major, (T, N, C, H, W). Convolutions are stateless, so time is folded into the
batch for them (one big conv instead of T small ones); only the LIF neurons step through time.
BatchNorm in training takes its statistics per timestep, as the authors' per-timestep loop does
(models/batchnorm.py; `bn_stats="folded"` pools them over time instead, a different network in
train mode); in eval mode both use the running statistics.

Block (MS-ResNet):  y = BN2(Conv2(LIF2(BN1(Conv1(LIF1(x)))))) + shortcut(x)
The stream x is real-valued (the "membrane shortcut"); only conv inputs are spikes. The
downsample shortcut is AvgPool2d(2) -> Conv1x1 -> BN on that real-valued stream. The stem is
Conv3x3(stride 2) -> BN on the real-valued residual frames (direct coding, no LIF, no maxpool);
stage 1 has stride 2 as well, so the stages run on the ANN's grid (56/28/14/7 at 224).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from respike_neuro.models.batchnorm import BN_STATS, batch_norm_per_timestep
from respike_neuro.models.memory import (
    avg_pool2d,
    lean_here,
    recompute_in_backward,
    recompute_stem,
    spike_conv2d,
)
from respike_neuro.models.neuron import LIF

NeuronFactory = Callable[[], LIF]


def fold_time(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless (N, C, H, W) module to a (T, N, C, H, W) sequence."""
    t, n = x.shape[:2]
    y = module(x.reshape(t * n, *x.shape[2:]))
    return y.reshape(t, n, *y.shape[1:])


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm: the unit that BN folding turns into one biased conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def conv_bn_sequence(
    unit: nn.Module, x: torch.Tensor, bn_stats: str, *, spikes: bool = False
) -> torch.Tensor:
    """A ConvBN (or, after folding, a biased Conv2d) over (T, N, C, H, W).

    In training with bn_stats="per_timestep" the BN normalises each timestep with its own batch
    statistics; otherwise time is folded into the batch for the whole unit. `spikes`: x is 0/1, so
    in training the conv keeps its input for backward as 1 bit per value (models/memory.py).
    """
    if isinstance(unit, ConvBN) and unit[1].training:
        conv, bn = unit
        t = x.shape[0]
        y = (spike_conv2d if spikes else _call)(conv, x.flatten(0, 1)).unflatten(0, (t, -1))
        return batch_norm_per_timestep(bn, y) if bn_stats == "per_timestep" else fold_time(bn, y)
    return fold_time(unit, x)


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _plain_avg_pool(pool: nn.Module) -> bool:
    """An unhooked AvgPool2d(k) with stride k and no padding, which memory.avg_pool2d computes."""
    return (
        type(pool) is nn.AvgPool2d
        and isinstance(pool.kernel_size, int)
        and pool.stride == pool.kernel_size
        and pool.padding == 0
        and not pool.ceil_mode
        and pool.count_include_pad
        and pool.divisor_override is None
        and not (pool._forward_hooks or pool._forward_pre_hooks)
    )


class MSBlock(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, stride: int, *, neuron: NeuronFactory, bn_stats: str = "per_timestep"
    ) -> None:
        super().__init__()
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {list(BN_STATS)}, got {bn_stats!r}")
        self.bn_stats = bn_stats
        self.lif1 = neuron()
        self.conv1 = ConvBN(c_in, c_out, 3, stride)
        self.lif2 = neuron()
        self.conv2 = ConvBN(c_out, c_out, 3)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            pool = nn.AvgPool2d(stride) if stride != 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, ConvBN(c_in, c_out, 1))

    def forward(self, x: torch.Tensor, spikes: torch.Tensor | None = None) -> torch.Tensor:
        """`spikes`: LIF1(x), where the caller has it already (MSResNet.forward_stem_spikes)."""
        out = self._conv1_bn1_lif2(self.lif1(x) if spikes is None else spikes)
        out = conv_bn_sequence(self.conv2, out, self.bn_stats, spikes=True)
        if self.shortcut is None:
            return out + x
        pool, unit = self.shortcut
        if _plain_avg_pool(pool):  # saves no activation in training
            pooled = fold_time(partial(avg_pool2d, kernel=pool.kernel_size), x)
        else:
            pooled = fold_time(pool, x)
        return out + conv_bn_sequence(unit, pooled, self.bn_stats)

    def _conv1_bn1_lif2(self, spikes: torch.Tensor) -> torch.Tensor:
        """LIF2(BN1(Conv1(spikes))). In training LIF2's membrane is not kept for backward: BN1 and
        LIF2 are recomputed there from the conv output, which BN1 keeps anyway (models/memory.py)."""
        unit, lif = self.conv1, self.lif2
        plain_lif = type(lif) is LIF and not (lif._forward_hooks or lif._forward_pre_hooks)
        if not (isinstance(unit, ConvBN) and unit[1].training and plain_lif and lean_here(spikes)):
            return lif(conv_bn_sequence(unit, spikes, self.bn_stats, spikes=True))
        conv, bn = unit
        y = spike_conv2d(conv, spikes.flatten(0, 1)).unflatten(0, (spikes.shape[0], -1))
        per_step = self.bn_stats == "per_timestep"
        norm = partial(batch_norm_per_timestep, bn) if per_step else partial(fold_time, bn)
        return recompute_in_backward(lambda y: lif(norm(y)), y, bn)


class MSResNet(nn.Module):
    """Stem + four stages of MS-ResNet blocks; each stage is callable on its own (for fusion)."""

    def __init__(
        self,
        *,
        width: int = 64,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        neuron: NeuronFactory,
        in_channels: int = 3,
        bn_stats: str = "per_timestep",
    ) -> None:
        super().__init__()
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {list(BN_STATS)}, got {bn_stats!r}")
        self.bn_stats = bn_stats
        self.channels = tuple(width * m for m in (1, 2, 4, 8))
        self.stem = ConvBN(in_channels, width, 3, stride=2)
        stages, c_in = [], width
        for c_out, n_blocks in zip(self.channels, blocks, strict=True):
            layer = [MSBlock(c_in, c_out, 2, neuron=neuron, bn_stats=bn_stats)]
            layer += [MSBlock(c_out, c_out, 1, neuron=neuron, bn_stats=bn_stats) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*layer))
            c_in = c_out
        self.stages = nn.ModuleList(stages)

    def forward_stem(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, N, 3, H, W) real-valued frames -> (T, N, width, H/2, W/2)."""
        return conv_bn_sequence(self.stem, frames, self.bn_stats)

    def forward_stem_spikes(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stem's output x and the first block's LIF1(x), its input spikes. In training the two
        are recomputed together from the frames in backward, so neither the stem's BN input nor
        that LIF's membrane (each as wide as x) is kept."""
        lif = self.stages[0][0].lif1

        def stem_spikes(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.forward_stem(f)
            return x, lif(x)

        return recompute_stem(self.stem, frames, stem_spikes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x, spikes = self.forward_stem_spikes(frames)
        for stage in self.stages:
            for block in stage:
                x, spikes = block(x, spikes), None
        return x
