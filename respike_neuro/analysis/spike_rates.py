"""Per-layer spike rates of a PyTorch ReSpike model on data, keyed by NIR LIF node names.

A forward hook on every LIF module of the spiking branch adds up its output spikes (T, N, C, H, W)
and the number of neuron-timesteps, so

    rate[layer] = total spikes / (neurons x timesteps x samples)     in [0, 1]

i.e. spikes per neuron per timestep, the quantity `analysis.ops` multiplies with a conv's MACs
(summed over timesteps) to get SyOPs. Keys are `layer{i}.{j}.lif1` / `.lif2` as in the NIR graph,
so rates measured in Lava can be compared and priced the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn

from respike_neuro.models.neuron import LIF
from respike_neuro.models.snn import MSResNet


def _spiking_branch(model: nn.Module) -> MSResNet:
    snn = model if isinstance(model, MSResNet) else getattr(model, "snn", None)
    if not isinstance(snn, MSResNet):
        raise ValueError(
            f"model ({type(model).__name__}) has no spiking branch: spike rates need an SNN or hybrid model"
        )
    return snn


def lif_layers(model: nn.Module) -> dict[str, LIF]:
    """NIR name -> LIF module for a ReSpike model (or its MSResNet), in execution order."""
    snn = _spiking_branch(model)
    layers = {}
    for i, stage in enumerate(snn.stages, start=1):
        for j, block in enumerate(stage):
            for attr in ("lif1", "lif2"):
                module = getattr(block, attr, None)
                if not isinstance(module, LIF):
                    raise ValueError(f"layer{i}.{j}.{attr} is {type(module).__name__}, expected a LIF module")
                layers[f"layer{i}.{j}.{attr}"] = module
    return layers


class SpikeCounter:
    """Accumulates spikes and neuron-timesteps per LIF layer while active (see `counting`)."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = lif_layers(model)
        self.spikes = dict.fromkeys(self.layers, 0.0)
        self.neuron_steps = dict.fromkeys(self.layers, 0)
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            self.spikes[name] += float(out.detach().sum(dtype=torch.float64))
            self.neuron_steps[name] += out.numel()

        return hook

    def start(self) -> None:
        if not self._handles:
            self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]

    def stop(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def rates(self) -> dict[str, float]:
        empty = [n for n, c in self.neuron_steps.items() if c == 0]
        if empty:
            raise RuntimeError(f"no forward pass reached LIF layer(s) {empty[:4]}: nothing to average")
        return {n: self.spikes[n] / self.neuron_steps[n] for n in self.layers}


@contextmanager
def counting(model: nn.Module):
    """`with counting(model) as counter: model(x) ...; counter.rates()`."""
    counter = SpikeCounter(model)
    counter.start()
    try:
        yield counter
    finally:
        counter.stop()


def measure_spike_rates(
    model: nn.Module,
    batches: Iterable,
    *,
    max_batches: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Mean spike rate of every LIF layer over `batches` (clips (B, T, 3, H, W) or (clip, label) pairs).

    The model runs in eval mode without gradients (its training flag is restored afterwards).
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with counting(model) as counter, torch.no_grad():
            iterator = batches
            if progress:
                from tqdm import tqdm

                iterator = tqdm(batches, desc="spike rates", unit="batch", total=max_batches)
            for batch in iterator:
                clip = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(clip, torch.Tensor):
                    raise TypeError(f"batch {seen} holds a {type(clip).__name__}, expected a clip tensor")
                model(clip)
                seen += 1
                if max_batches is not None and seen >= max_batches:
                    break
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("no batches given: cannot measure spike rates on no data")
    return counter.rates()


def mean_rate(rates: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """Average of per-layer rates, weighted (e.g. by each layer's neuron-timesteps) or plain."""
    if not rates:
        raise ValueError("no spike rates to average")
    if weights is None:
        return sum(rates.values()) / len(rates)
    total = sum(weights[n] for n in rates)
    return sum(rates[n] * weights[n] for n in rates) / total
