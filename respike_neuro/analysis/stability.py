"""How stable are a model's own decisions? Top-1 agreement with itself under LSB-sized weight noise.

Why: a deep spiking net is chaotic at its thresholds. Once one spike flips, the spike patterns diverge
and only the logit margin decides, so a deployment's agreement with the float model cannot be read
without the float model's agreement with a perturbed copy of itself. This is the copy a faithful
`bits`-bit deployment would be: every spiking-branch conv weight moved by uniform noise in ±LSB/2,
LSB = max|w_layer| / 2**(bits-1) (the rounding error of a per-layer-exponent mantissa, Loihi 2: 8 bits).
The same question for thresholds: Loihi compares the membrane with vth << 6, a 17-bit register whose
resolution is that of the neuron's input current, so a deployed threshold is theta rounded to it.
"""

from __future__ import annotations

import torch

from respike_neuro.analysis.spike_rates import lif_layers


def perturbed_agreement(
    model: torch.nn.Module, clips: torch.Tensor, *, bits: int, draws: int, seed: int = 0, batch: int = 16
) -> list[float]:
    """For each of `draws` noise draws: the fraction of `clips` (B, T, 3, H, W) whose top-1 stays that of
    the unperturbed `model` (evaluated as given: dtype, device, eval mode). Weights are restored."""
    if model.snn is None:
        raise ValueError("the model has no spiking branch to perturb")
    if not 2 <= bits <= 53 or draws < 1:
        raise ValueError(f"bits must be in [2, 53] and draws >= 1, got {bits}, {draws}")
    ref = _top1(model, clips, batch)
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
            out.append(float((_top1(model, clips, batch) == ref).double().mean()))
    finally:
        with torch.no_grad():
            for c, w in zip(convs, orig, strict=True):
                c.weight.copy_(w)
    return out


def threshold_agreement(
    model: torch.nn.Module, clips: torch.Tensor, thresholds: dict[str, float], *, batch: int = 16
) -> float:
    """The fraction of `clips` whose top-1 stays that of `model` when every LIF layer named in
    `thresholds` (NIR names, layer{i}.{j}.lif{k}) fires at the given threshold instead, everything else
    unchanged: e.g. a fixed-point plan's effective thresholds vth / input_scale. Thresholds are restored."""
    lifs = lif_layers(model)
    unknown = sorted(set(thresholds) - set(lifs))
    if unknown:
        raise ValueError(f"no LIF layer named {unknown[0]!r} (known: {sorted(lifs)[:3]} ...)")
    ref = _top1(model, clips, batch)
    orig = {k: lif.threshold for k, lif in lifs.items()}
    try:
        for k, theta in thresholds.items():
            lifs[k].threshold = float(theta)
        return float((_top1(model, clips, batch) == ref).double().mean())
    finally:
        for k, theta in orig.items():
            lifs[k].threshold = theta


def _top1(model: torch.nn.Module, clips: torch.Tensor, batch: int) -> torch.Tensor:
    """Top-1 of `model` as given (dtype, device, mode) on (B, T, 3, H, W) clips, on the CPU."""
    p = next(model.parameters())
    with torch.no_grad():
        return torch.cat([model(clips[i : i + batch].to(p.device, p.dtype)).argmax(1).cpu()
                          for i in range(0, len(clips), batch)])
