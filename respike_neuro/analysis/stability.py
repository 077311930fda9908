"""How stable are a model's own decisions? Top-1 agreement with itself under LSB-sized weight noise.

Why: a deep spiking net is chaotic at its thresholds. Once one spike flips, the spike patterns diverge
and only the logit margin decides, so a deployment's agreement with the float model cannot be read
without the float model's agreement with a perturbed copy of itself. This is the copy a faithful
`bits`-bit deployment would be: every spiking-branch conv weight moved by uniform noise in ±LSB/2,
LSB = max|w_layer| / 2**(bits-1) (the rounding error of a per-layer-exponent mantissa, Loihi 2: 8 bits).
"""

from __future__ import annotations

import torch


def perturbed_agreement(
    model: torch.nn.Module, clips: torch.Tensor, *, bits: int, draws: int, seed: int = 0, batch: int = 16
) -> list[float]:
    """For each of `draws` noise draws: the fraction of `clips` (B, T, 3, H, W) whose top-1 stays that of
    the unperturbed `model` (evaluated as given: dtype, device, eval mode). Weights are restored."""
    if model.snn is None:
        raise ValueError("the model has no spiking branch to perturb")
    if not 2 <= bits <= 53 or draws < 1:
        raise ValueError(f"bits must be in [2, 53] and draws >= 1, got {bits}, {draws}")
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype

    def top1() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(clips[i : i + batch].to(dev, dtype)).argmax(1).cpu()
                              for i in range(0, len(clips), batch)])

    ref = top1()
    convs = [m for m in model.snn.modules() if isinstance(m, torch.nn.Conv2d)]
    orig = [c.weight.detach().clone() for c in convs]
    gen = torch.Generator().manual_seed(seed)
    out = []
    try:
        for _ in range(draws):
            with torch.no_grad():
                for c, w in zip(convs, orig, strict=True):
                    noise = torch.rand(w.shape, generator=gen, dtype=torch.float64) - 0.5
                    c.weight.copy_(w + (noise * float(w.abs().max()) / 2 ** (bits - 1)).to(w))
            out.append(float((top1() == ref).double().mean()))
    finally:
        with torch.no_grad():
            for c, w in zip(convs, orig, strict=True):
                c.weight.copy_(w)
    return out
