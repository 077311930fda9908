"""Operation counts per layer of a ReSpike model over one clip: dense MACs, additions, SyOPs.

The model runs once on a zero clip on the `meta` device (no memory, no arithmetic) with forward
hooks that read each layer's shapes, so every variant is counted exactly as its forward pass
runs. Three kinds of operation, priced differently by `analysis.energy`:

* MAC (multiply-accumulate on real values, 45 nm fp32: 4.6 pJ)
    conv:   MACs = H_out W_out C_out * k_h k_w C_in / groups   (per sample)
    linear: MACs = L * F_out * F_in
    attention: Q K^T and A V, each  N * heads * L_q * L_k * d_head
  Other real-valued multiplications (norm scaling, softmax, GELU, bilinear weights, the LIF leak
  v <- beta v + I) are counted as one MAC each, exp/erf as one MAC (an underestimate).
* add (real-valued addition with no multiply, 0.9 pJ): residual adds, bias adds (a folded
  BatchNorm leaves one bias add per output), pooling sums, means, norm statistics.
* SyOP (synaptic operation of a spike-driven conv, 0.9 pJ): a binary input spike triggers one
  accumulate per fan-out weight, so  SyOPs = rate * MACs_dense  where rate is the spike rate of
  the conv's input LIF layer (spikes per neuron per timestep) and MACs_dense the conv's MACs
  summed over all timesteps (the paper's Eq. 10 with SpikeRate = rate * T).

Comparisons (ReLU, max-pool, spike thresholds, the reset) are not counted.

SNN layers are named like the NIR graph (docs/nir-contract.md): `stem.conv`, `layer{i}.{j}.lif1`,
`layer{i}.{j}.conv1`, `layer{i}.{j}.shortcut.conv`, `layer{i}.{j}.out` (the membrane-shortcut
add), ...; other layers by their module path (`ann.stages.0.0.conv1`, `fusions.2.block.ff.proj`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from respike_neuro.config import ModelConfig
from respike_neuro.models.fusion import GEGLU, Attention, CrossAttentionFusion, TransformerBlock
from respike_neuro.models.hybrid import ReSpike, build_model
from respike_neuro.models.neuron import LIF
from respike_neuro.models.snn import MSBlock

COMPONENTS = ("ann", "snn_spike", "snn_dense", "fusion", "head")
COMPONENT_TITLES = {
    "ann": "ANN",
    "snn_spike": "SNN spike-driven",
    "snn_dense": "SNN dense parts",
    "fusion": "fusion",
    "head": "head",
}
MATMUL_KINDS = ("conv", "linear", "matmul")  # what torch's FlopCounterMode counts (2 FLOPs per MAC)

# real-valued elementwise costs per element: (MACs, adds); see the module docstring
_NORM = (2, 1)  # mean (add), variance (MAC), normalise + affine folded into one MAC
_SOFTMAX = (3, 1)  # 1/sqrt(d) scale, exp, divide; the row sum
_GELU = (4, 1)  # 0.5 x (1 + erf(x / sqrt 2)): three multiplies + erf, one add
_BILINEAR = (3, 3)  # three lerps a + w (b - a) per output element


@dataclass(frozen=True)
class LayerOps:
    """Operations of one layer over one clip.

    dense_macs: the MACs of a dense execution (for spike-driven convs the basis of the SyOPs);
    macs: the MACs actually spent (0 for a spike-driven conv); rate_source: the LIF layer whose
    spikes feed a spike-driven conv; rate: its spike rate; syops = rate * dense_macs.
    """

    name: str
    component: str
    kind: str
    dense_macs: int = 0
    macs: int = 0
    adds: int = 0
    rate_source: str | None = None
    rate: float | None = None

    @property
    def spike_driven(self) -> bool:
        return self.rate_source is not None

    @property
    def syops(self) -> float:
        return 0.0 if self.rate is None else self.rate * self.dense_macs

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "component": self.component,
            "kind": self.kind,
            "dense_macs": self.dense_macs,
            "macs": self.macs,
            "adds": self.adds,
            "syops": self.syops,
        }
        if self.spike_driven:
            out.update(rate_source=self.rate_source, rate=self.rate)
        return out


@dataclass
class Trace:
    """What one meta forward pass saw: per-layer ops (without rates), LIF sizes and stage shapes."""

    layers: dict[str, LayerOps] = field(default_factory=dict)
    lif_neuron_steps: dict[str, int] = field(default_factory=dict)
    ann_stages: list[tuple[int, ...]] = field(default_factory=list)
    snn_stages: list[tuple[int, ...]] = field(default_factory=list)
    fusion_tokens: list[dict[str, int]] = field(default_factory=list)

    def add(
        self,
        name: str,
        component: str,
        kind: str,
        *,
        dense_macs: int = 0,
        macs: int | None = None,
        adds: int = 0,
        rate_source: str | None = None,
    ) -> None:
        macs = dense_macs if macs is None else macs
        old = self.layers.get(name)
        if old is None:
            self.layers[name] = LayerOps(name, component, kind, dense_macs, macs, adds, rate_source)
        else:  # a module called more than once per forward: accumulate
            self.layers[name] = replace(
                old, dense_macs=old.dense_macs + dense_macs, macs=old.macs + macs, adds=old.adds + adds
            )


def snn_layer_name(path: str) -> str:
    """Module path inside the SNN (`stages.0.1.conv1.0`) -> NIR node name (`layer1.1.conv1`)."""
    fixed = {"stem": "stem", "stem.0": "stem.conv", "stem.1": "stem.conv.bn"}
    if path in fixed:
        return fixed[path]
    m = re.fullmatch(r"stages\.(\d+)\.(\d+)(?:\.(.*))?", path)
    if m is None:
        raise ValueError(f"SNN module path {path!r} is not part of the MS-ResNet layout")
    block = f"layer{int(m.group(1)) + 1}.{m.group(2)}"
    rest = m.group(3)
    suffix = {
        None: "out",
        "lif1": "lif1",
        "lif2": "lif2",
        "conv1": "conv1",
        "conv1.0": "conv1",
        "conv1.1": "conv1.bn",
        "conv2": "conv2",
        "conv2.0": "conv2",
        "conv2.1": "conv2.bn",
        "shortcut": "shortcut",
        "shortcut.0": "shortcut.pool",
        "shortcut.1": "shortcut.convbn",
        "shortcut.1.0": "shortcut.conv",
        "shortcut.1.1": "shortcut.conv.bn",
    }
    if rest not in suffix:
        raise ValueError(f"SNN module path {path!r} is not part of the MS-ResNet layout")
    return f"{block}.{suffix[rest]}"


def _component_and_name(path: str) -> tuple[str, str]:
    root, _, rest = path.partition(".")
    if root == "snn":
        return "snn_dense", snn_layer_name(rest)
    if root == "fusions":
        return "fusion", path
    if root in ("ann", "head"):
        return root, path
    raise ValueError(f"module {path!r} belongs to no known component")


def _conv_macs(conv: nn.Conv2d, out: torch.Tensor) -> int:
    kh, kw = conv.kernel_size
    return out.numel() * kh * kw * conv.in_channels // conv.groups


def trace_model(model: ReSpike, clip_shape: tuple[int, ...]) -> Trace:
    """Run `model` on a zero clip of `clip_shape` (B, T, 3, H, W) on the meta device and record ops.

    The model is moved to `meta` for the pass (pass a throwaway copy or a meta-built model).
    """
    if len(clip_shape) != 5 or clip_shape[2] != 3:
        raise ValueError(f"clip_shape must be (B, T, 3, H, W), got {tuple(clip_shape)}")
    trace = Trace()
    handles = []

    def hook_for(path: str, module: nn.Module):
        component, name = _component_and_name(path)

        def hook(mod: nn.Module, inputs: tuple, out) -> None:
            _record(trace, mod, path, component, name, inputs, out)

        return hook

    for path, module in model.named_modules():
        if path and _counted(module):
            handles.append(module.register_forward_hook(hook_for(path, module)))
    stage_hooks = _register_stage_hooks(model, trace)
    try:
        model.to("meta")
        with torch.no_grad():
            model.segment_logits(torch.zeros(clip_shape, device="meta"))
    finally:
        for h in handles + stage_hooks:
            h.remove()
    _add_head_pooling(model, trace)
    _mark_spike_driven(trace)
    return trace


_COUNTED_TYPES = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.AvgPool2d,
    LIF,
    Attention,
    GEGLU,
    TransformerBlock,
    CrossAttentionFusion,
    MSBlock,
    BasicBlock,
    Bottleneck,
)


def _counted(module: nn.Module) -> bool:
    return isinstance(module, _COUNTED_TYPES)


def _record(trace: Trace, mod: nn.Module, path: str, component: str, name: str, inputs: tuple, out) -> None:
    if isinstance(mod, nn.Conv2d):
        trace.add(
            name,
            component,
            "conv",
            dense_macs=_conv_macs(mod, out),
            adds=out.numel() if mod.bias is not None else 0,
        )
    elif isinstance(mod, nn.Linear):
        trace.add(
            name,
            component,
            "linear",
            dense_macs=out.numel() * mod.in_features,
            adds=out.numel() if mod.bias is not None else 0,
        )
    elif isinstance(mod, nn.BatchNorm2d):  # folded into the preceding conv: one bias add per output
        trace.add(name, component, "bias", adds=out.numel())
    elif isinstance(mod, (nn.GroupNorm, nn.LayerNorm)):
        n = out.numel()
        trace.add(name, component, "norm", macs=_NORM[0] * n, adds=_NORM[1] * n)
    elif isinstance(mod, nn.AvgPool2d):
        kernel = mod.kernel_size
        window = kernel * kernel if isinstance(kernel, int) else math.prod(kernel)
        n = out.numel()
        trace.add(name, component, "pool", macs=n, adds=n * (window - 1))  # sum of the window, one scale
    elif isinstance(mod, LIF):  # v <- beta v + I once per neuron and timestep
        trace.add(name, component, "lif", macs=out.numel())
        trace.lif_neuron_steps[name] = trace.lif_neuron_steps.get(name, 0) + out.numel()
    elif isinstance(mod, Attention):
        x = inputs[0]
        context = inputs[1] if len(inputs) > 1 and inputs[1] is not None else x
        n, lq, lk = x.shape[0], x.shape[1], context.shape[1]
        inner = mod.to_q.out_features
        scores = n * mod.heads * lq * lk
        trace.add(f"{name}.qk", component, "matmul", dense_macs=n * lq * lk * inner)
        trace.add(
            f"{name}.softmax", component, "softmax", macs=_SOFTMAX[0] * scores, adds=_SOFTMAX[1] * scores
        )
        trace.add(f"{name}.av", component, "matmul", dense_macs=n * lq * lk * inner)
    elif isinstance(mod, GEGLU):
        n = out.numel() * mod.out.in_features // mod.out.out_features  # elements of a (and of the gate)
        trace.add(f"{name}.geglu", component, "act", macs=(_GELU[0] + 1) * n, adds=_GELU[1] * n)
    elif isinstance(mod, TransformerBlock):
        trace.add(f"{name}.residual", component, "add", adds=3 * out.numel())
    elif isinstance(mod, CrossAttentionFusion):
        _record_fusion(trace, mod, component, name, inputs, out)
    elif isinstance(mod, (MSBlock, BasicBlock, Bottleneck)):  # the residual (membrane-shortcut) add
        trace.add(
            name if component == "snn_dense" else f"{name}.residual", component, "add", adds=out.numel()
        )


def _record_fusion(
    trace: Trace, mod: CrossAttentionFusion, component: str, name: str, inputs: tuple, out: torch.Tensor
) -> None:
    x, context = inputs[0], inputs[1]
    p = mod.pool
    pooled_x = x.numel() // (p * p)
    if p > 1:
        pooled = pooled_x + context.numel() // (p * p)
        trace.add(f"{name}.pool", component, "pool", macs=pooled, adds=pooled * (p * p - 1))
        trace.add(
            f"{name}.upsample",
            component,
            "upsample",
            macs=_BILINEAR[0] * out.numel(),
            adds=_BILINEAR[1] * out.numel(),
        )
    trace.add(f"{name}.residual", component, "add", adds=pooled_x)
    h, w = x.shape[-2] // p, x.shape[-1] // p
    hc, wc = context.shape[-2] // p, context.shape[-1] // p
    trace.fusion_tokens.append(
        {
            "calls": int(x.shape[0]),
            "query_tokens": h * w,
            "context_tokens": hc * wc,
            "dim": mod.proj_in.out_channels,
            "context_dim": int(context.shape[1]),
        }
    )


def _register_stage_hooks(model: ReSpike, trace: Trace) -> list:
    handles = []
    if model.ann is not None:
        for stage in model.ann.stages:
            handles.append(
                stage.register_forward_hook(lambda m, i, o: trace.ann_stages.append(tuple(o.shape)))
            )
    if model.snn is not None:  # the hybrid steps through a stage's blocks: hook its last block
        for stage in model.snn.stages:
            handles.append(
                stage[-1].register_forward_hook(lambda m, i, o: trace.snn_stages.append(tuple(o.shape)))
            )
    return handles


def _add_head_pooling(model: ReSpike, trace: Trace) -> None:
    """The global average pooling (and SNN time mean) that feeds the head: one add per element."""
    adds = 0
    if trace.ann_stages:
        adds += math.prod(trace.ann_stages[-1])
    if trace.snn_stages:
        adds += math.prod(trace.snn_stages[-1])
    trace.add("head.pool", "head", "pool", adds=adds)
    # keep the head's linear after its pooling in the listing
    if "head" in trace.layers:
        trace.layers["head"] = trace.layers.pop("head")


def _mark_spike_driven(trace: Trace) -> None:
    """conv1 / conv2 of every MS block read spikes of lif1 / lif2: spike-driven, no dense MACs."""
    for name, layer in list(trace.layers.items()):
        m = re.fullmatch(r"(layer\d+\.\d+)\.conv([12])", name)
        if m and layer.kind == "conv":
            trace.layers[name] = replace(
                layer, component="snn_spike", macs=0, rate_source=f"{m.group(1)}.lif{m.group(2)}"
            )


# ---------------------------------------------------------------------------------------------------
@dataclass
class OpsReport:
    """Per-layer ops of one clip with spike rates applied, and the shapes seen on the way."""

    config: ModelConfig
    layers: list[LayerOps]
    trace: Trace
    rate_mode: str  # "assumed" or "measured"

    def total(self, attr: str, component: str | None = None, kinds: tuple[str, ...] | None = None) -> float:
        return sum(
            getattr(layer, attr)
            for layer in self.layers
            if (component is None or layer.component == component) and (kinds is None or layer.kind in kinds)
        )

    def by_component(self) -> dict[str, dict[str, float]]:
        return {
            c: {
                "macs": self.total("macs", c),
                "adds": self.total("adds", c),
                "syops": self.total("syops", c),
                "dense_macs": self.total("dense_macs", c),
            }
            for c in COMPONENTS
        }

    @property
    def lif_layers(self) -> list[str]:
        return list(self.trace.lif_neuron_steps)


def clip_shape(cfg: ModelConfig, batch: int = 1) -> tuple[int, int, int, int, int]:
    return (batch, cfg.frames, 3, cfg.resolution, cfg.resolution)


def trace_config(cfg: ModelConfig) -> tuple[Trace, ReSpike]:
    """Build `cfg`'s model on the meta device (no weights allocated) and trace one clip.

    Counts do not depend on weights, so `ann_weights` is ignored (nothing is read from disk).
    """
    with torch.device("meta"):
        model = build_model(cfg.replace(ann_weights=None))
    return trace_model(model, clip_shape(cfg)), model


def apply_rates(trace: Trace, rates: float | Mapping[str, float]) -> list[LayerOps]:
    """Attach input spike rates to the spike-driven convs.

    rates: one assumed rate for every LIF layer, or a dict NIR LIF name -> rate (as returned by
    `spike_rates.measure_spike_rates` or reported by the Lava side) covering every LIF layer.
    """
    lif_names = set(trace.lif_neuron_steps)
    if isinstance(rates, Mapping):
        missing, unknown = sorted(lif_names - set(rates)), sorted(set(rates) - lif_names)
        if missing or unknown:
            raise ValueError(
                f"spike rates do not match the model's LIF layers: missing {_few(missing)}, "
                f"unknown {_few(unknown)}"
            )
        table = {k: _check_rate(k, v) for k, v in rates.items()}
    else:
        rate = _check_rate("assumed rate", rates)
        table = dict.fromkeys(lif_names, rate)
    return [
        replace(layer, rate=table[layer.rate_source]) if layer.spike_driven else layer
        for layer in trace.layers.values()
    ]


def _few(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "") if names else "none"


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"spike rate of {name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(
            f"spike rate of {name} must be in [0, 1] (spikes per neuron per timestep), got {value}"
        )
    return float(value)


def count_ops(
    cfg: ModelConfig, rates: float | Mapping[str, float] = 0.1, *, rate_mode: str | None = None
) -> OpsReport:
    """Operation counts of `cfg`'s model over one clip (batch 1) with the given spike rates.

    rate_mode labels where the rates come from ("assumed" / "measured"); by default a single
    number is "assumed" and a per-layer dict "measured".
    """
    trace, _ = trace_config(cfg)
    mode = rate_mode or ("measured" if isinstance(rates, Mapping) else "assumed")
    return OpsReport(cfg, apply_rates(trace, rates), trace, mode)
