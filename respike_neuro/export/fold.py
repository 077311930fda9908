"""BatchNorm folding: the eval-form spiking branch, every Conv+BN pair turned into one biased conv.

NIR has no BatchNorm, and neither has Loihi: in eval mode BN is an affine map per channel, so it
merges into the conv that feeds it. With s = gamma / sqrt(running_var + eps):

    BN(W * x + b) = s * (W * x + b - mu) + beta = (s W) * x + (s (b - mu) + beta)
    W' = s[o] * W[o, ...] ,  b' = beta - s * mu + s * b

The folding is done in float64 whatever the model's dtype, so a float64 graph carries the exact
eval-mode affine map and float32 copies are rounded once. `check_snn` walks the network and
rejects any layer the exporter does not know (the message names the layer), so a model someone
changed cannot be exported silently wrong.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from respike_neuro.models.neuron import LIF
from respike_neuro.models.snn import MSBlock, MSResNet

__all__ = ["UnsupportedLayerError", "check_snn", "fold_conv_bn", "fold_model", "fold_snn"]


class UnsupportedLayerError(ValueError):
    """A layer the NIR exporter cannot express (the message names it and says why)."""


def _conv_bn_pair(module: nn.Module, name: str) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """The (conv, bn) of a ConvBN unit, after checking both are exportable."""
    kids = list(module.children()) if isinstance(module, nn.Sequential) else []
    if len(kids) != 2 or type(kids[0]) is not nn.Conv2d or type(kids[1]) is not nn.BatchNorm2d:
        inner = ", ".join(type(k).__name__ for k in kids) if kids else type(module).__name__
        raise UnsupportedLayerError(f"layer {name!r} ({inner}) is not Conv2d followed by BatchNorm2d")
    conv, bn = kids
    _check_conv(conv, name + ".0")
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedLayerError(
            f"layer {name!r}: BatchNorm2d without running statistics cannot be folded"
        )
    if bn.num_features != conv.out_channels:
        raise UnsupportedLayerError(
            f"layer {name!r}: BatchNorm2d has {bn.num_features} features, conv "
            f"{conv.out_channels} output channels"
        )
    return conv, bn


def _check_conv(conv: nn.Module, name: str) -> None:
    if type(conv) is not nn.Conv2d:
        raise UnsupportedLayerError(f"layer {name!r} is {type(conv).__name__}, expected Conv2d")
    if conv.padding_mode != "zeros":
        raise UnsupportedLayerError(f"layer {name!r}: padding_mode={conv.padding_mode!r} (only 'zeros')")
    if isinstance(conv.padding, str):
        raise UnsupportedLayerError(f"layer {name!r}: string padding {conv.padding!r} (give explicit ints)")


def _check_lif(module: nn.Module, name: str) -> None:
    if not isinstance(module, LIF):
        raise UnsupportedLayerError(f"layer {name!r} is {type(module).__name__}, expected the project's LIF")
    if not 0.0 <= float(module.beta) < 1.0 or float(module.threshold) <= 0:
        raise UnsupportedLayerError(
            f"layer {name!r}: need 0 <= beta < 1 and threshold > 0, "
            f"got beta={module.beta}, threshold={module.threshold}"
        )


def _check_pool(module: nn.Module, name: str) -> None:
    if isinstance(module, nn.Identity):
        return
    if type(module) is not nn.AvgPool2d:
        raise UnsupportedLayerError(
            f"layer {name!r} is {type(module).__name__}, expected AvgPool2d or Identity"
        )
    k = nn.modules.utils._pair(module.kernel_size)
    s = nn.modules.utils._pair(module.stride if module.stride is not None else module.kernel_size)
    p = nn.modules.utils._pair(module.padding)
    if module.ceil_mode or p != (0, 0) or module.divisor_override is not None or k != s:
        raise UnsupportedLayerError(
            f"layer {name!r}: only AvgPool2d with stride == kernel, no padding, "
            f"floor mode and no divisor override is exported, got {module}"
        )


def check_snn(snn: nn.Module) -> None:
    """Raise UnsupportedLayerError naming the first layer of `snn` the exporter cannot express."""
    if not isinstance(snn, MSResNet):
        raise UnsupportedLayerError(f"spiking branch is {type(snn).__name__}, expected MSResNet")
    _conv_bn_pair(snn.stem, "stem")
    known = {"stem", "stages"}
    for name, _ in snn.named_children():
        if name not in known:
            raise UnsupportedLayerError(
                f"layer {name!r} of the spiking branch is not part of the MS-ResNet export"
            )
    for i, stage in enumerate(snn.stages, start=1):
        if type(stage) is not nn.Sequential:
            raise UnsupportedLayerError(
                f"layer 'stages.{i - 1}' is {type(stage).__name__}, expected Sequential"
            )
        for j, block in enumerate(stage):
            name = f"layer{i}.{j}"
            if type(block) is not MSBlock:
                raise UnsupportedLayerError(f"layer {name!r} is {type(block).__name__}, expected MSBlock")
            extra = {n for n, _ in block.named_children()} - {"lif1", "conv1", "lif2", "conv2", "shortcut"}
            if extra:
                raise UnsupportedLayerError(f"layer {name!r} has unknown sub-layer(s) {sorted(extra)}")
            _check_lif(block.lif1, f"{name}.lif1")
            _check_lif(block.lif2, f"{name}.lif2")
            _conv_bn_pair(block.conv1, f"{name}.conv1")
            _conv_bn_pair(block.conv2, f"{name}.conv2")
            if block.shortcut is not None:
                sc = block.shortcut
                if type(sc) is not nn.Sequential or len(sc) != 2:
                    raise UnsupportedLayerError(
                        f"layer '{name}.shortcut' is {type(sc).__name__}, "
                        "expected Sequential(AvgPool2d|Identity, ConvBN)"
                    )
                _check_pool(sc[0], f"{name}.shortcut.0")
                _conv_bn_pair(sc[1], f"{name}.shortcut.1")


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Folded (weight, bias) in float64 for BN(conv(x)) with BN's running statistics (eval form)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    scale = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    weight = w * scale.view(-1, 1, 1, 1)
    bias = shift + scale * (b - bn.running_mean.detach().double())
    return weight, bias


def _folded_conv(unit: nn.Sequential, dtype: torch.dtype) -> nn.Conv2d:
    conv, bn = unit[0], unit[1]
    weight, bias = fold_conv_bn(conv, bn)
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    )
    out.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    out.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return out


def fold_snn(snn: MSResNet, *, dtype: torch.dtype | None = None) -> MSResNet:
    """An eval-form copy of the spiking branch with every ConvBN replaced by one biased Conv2d.

    The copy computes the same function as `snn.eval()` (within float rounding); the original is
    left untouched. dtype defaults to the dtype of the original's parameters.
    """
    check_snn(snn)
    dtype = dtype or snn.stem[0].weight.dtype
    folded = copy.deepcopy(snn).to(dtype)
    folded.stem = _folded_conv(snn.stem, dtype)
    for stage_f, stage in zip(folded.stages, snn.stages, strict=True):
        for block_f, block in zip(stage_f, stage, strict=True):
            block_f.conv1 = _folded_conv(block.conv1, dtype)
            block_f.conv2 = _folded_conv(block.conv2, dtype)
            if block.shortcut is not None:
                block_f.shortcut = nn.Sequential(
                    copy.deepcopy(block.shortcut[0]), _folded_conv(block.shortcut[1], dtype)
                )
    return folded.eval().requires_grad_(False)


def fold_model(model: nn.Module, *, dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of a ReSpike model in eval form whose spiking branch is BN-folded (host parts unchanged)."""
    snn = getattr(model, "snn", None)
    if snn is None:
        raise ValueError("the model has no spiking branch (architecture 'ann'): nothing to fold or export")
    dtype = dtype or snn.stem[0].weight.dtype
    folded_snn = fold_snn(snn, dtype=dtype)
    model.snn = None  # do not deep-copy the branch we replace
    try:
        out = copy.deepcopy(model)
    finally:
        model.snn = snn
    out.snn = folded_snn
    return out.to(dtype).eval()
