"""Helpers shared by several test modules: `from respike_tests_helpers import ...` (tests/conftest.py
puts tests/shared on sys.path: tests run with --import-mode=importlib, so test folders are not packages)."""

from __future__ import annotations

import math

import nir
import torch
from torch import nn

from respike_neuro.config import small
from respike_neuro.models.hybrid import build_model


def lively_model(architecture: str = "hybrid", *, width: int = 8, seed: int = 0) -> nn.Module:
    """A small model with non-trivial BN statistics/affine terms, non-identity fusion and active neurons
    in every layer (eval mode)."""
    inputs = {"hybrid": "key+res", "snn": "res", "ann": "key"}[architecture]
    torch.manual_seed(seed)
    model = build_model(small(snn_width=width, architecture=architecture, inputs=inputs))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = None  # running stats = average over the warm-up batches
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) * 1.5 + 1.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.5 + 0.3)
        for fusion in model.fusions or []:
            fusion.proj_out.weight.normal_(0.0, 0.1, generator=g)  # zero-init would make fusion the identity
        model.train()
        for _ in range(2):
            model.segment_logits(0.5 * torch.randn(2, 8, 3, 64, 64, generator=g))
    return model.eval()


class AuthorsATan(torch.autograd.Function):
    """spikingjelly's surrogate.ATan(alpha=2) on their membrane: Heaviside forward,
    (a/2)/(1+(pi/2 a x)^2) = 1/(1+(pi x)^2) backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1.0 + (math.pi * x) ** 2)


def conv2d_node(weight, bias, *, padding: int = 0, stride: int = 1, input_shape=(4, 4)) -> nir.Conv2d:
    """An undilated, ungrouped NIR Conv2d."""
    return nir.Conv2d(
        input_shape=input_shape,
        weight=weight,
        stride=stride,
        padding=padding,
        dilation=1,
        groups=1,
        bias=bias,
    )
