"""Plan -> Lava processes and the ProcessModel choice for each (float or Loihi-2 fixed point).

NIR node -> Lava process:
  Input            Injector (host float) -> GradedRelay port (quantises to fixed point at the border)
  Conv2d           lava.proc.conv.Conv (true convolution, WHC layout: W_lava = W[:, :, ::-1, ::-1].T(0,3,2,1))
  AvgPool/SumPool  lava.proc.conv.Conv, depthwise (groups = C) with weights 1/k^2 or 1
  LIF              lava.proc.lif.LIFReset(du=1, dv=1-beta, vth=theta, bias=folded conv bias); it resets u, v
                   when its own logical timestep 0 arrives: reset_interval = T, reset_offset = (L+1) mod T
                   (Lava counts time_step from 1), so state never leaks across segments
  Scale (junction) GradedRelay: scale * (sum of inputs + carried conv biases)
  Output           Extractor (one per port), optional Extractor per LIF for spike recording
  (planner)        GradedDelay for delay-matched skip paths, GradedRelay '#bias' for biases with no neuron
Models are chosen per process instance (exception_proc_model_map keyed by instance), which also spares
Lava's compiler its directory scan for candidate models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from respike_neuro.sim.lifecycle import import_lava_runtime

import_lava_runtime()

from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.models import PyConvModelFixed, PyConvModelFloat
from lava.proc.conv.process import Conv
from lava.proc.io import utils as io_utils
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
from lava.proc.io.injector import Injector, PyLoihiInjectorModel
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat
from lava.proc.lif.process import LIFReset

from respike_neuro.engines import MODES
from respike_neuro.sim.kernels import lava_conv_weight, to_lava
from respike_neuro.sim.plan import Plan, PlanError, Unit
from respike_neuro.sim.procs.models import (
    SPARSE_THRESHOLD_KEY,
    FastConvModelFixed,
    FastConvModelFloat,
    FastLifResetModelBitAcc,
    FastLifResetModelFloat,
    PyGradedDelayFixed,
    PyGradedDelayFloat,
    PyGradedRelayFixed,
    PyGradedRelayFloat,
    PyTieModel,
)
from respike_neuro.sim.procs.processes import GradedDelay, GradedRelay, Tie
from respike_neuro.sim.quantization import MAX_WEIGHT_BITS, WeightFormat


@dataclass
class LavaNetwork:
    procs: dict[str, object]  # unit key -> process whose out-port carries the unit's stream
    injectors: dict[str, Injector]
    extractors: dict[str, Extractor]
    spike_extractors: dict[str, Extractor]
    model_map: dict = field(default_factory=dict)
    run_cfg: object = None
    anchor: object = None
    n_processes: int = 0


def _components(plan: Plan) -> int:
    parent = {k: k for k in plan.units}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k, u in plan.units.items():
        for p in u.preds:
            parent[find(p)] = find(k)
    return len({find(k) for k in plan.units})


def _out_port(proc):
    return proc.a_out if isinstance(proc, Conv) else proc.s_out


def _in_port(proc):
    if isinstance(proc, Conv):
        return proc.s_in
    if isinstance(proc, Extractor):
        return proc.in_port
    return proc.a_in


# unit kind -> ProcessModel (float, fixed point): this package's fast models, and Lava's stock ones
_FAST_MODELS = {
    "conv": (FastConvModelFloat, FastConvModelFixed),
    "lif": (FastLifResetModelFloat, FastLifResetModelBitAcc),
    "relay": (PyGradedRelayFloat, PyGradedRelayFixed),
    "delay": (PyGradedDelayFloat, PyGradedDelayFixed),
}
_STOCK_MODELS = {
    **_FAST_MODELS,
    "conv": (PyConvModelFloat, PyConvModelFixed),
    "lif": (PyLifResetModelFloat, PyLifResetModelBitAcc),
}


def build_network(
    plan: Plan,
    *,
    timesteps: int,
    mode: str = "float",
    fast_models: bool = True,
    record_spikes: bool = True,
    fixed=None,
    sparse_threshold: float = 0.1,
    buffer_size: int = 4,
) -> LavaNetwork:
    """Create (unconnected-to-runtime) Lava processes for every plan unit, wired as the plan says."""
    _check_network_args(mode, timesteps, fixed, fast_models)
    fx = mode == "fixed"
    cfg = io_utils.ChannelConfig(
        send_full=io_utils.SendFull.BLOCKING,
        receive_empty=io_utils.ReceiveEmpty.BLOCKING,
        receive_not_empty=io_utils.ReceiveNotEmpty.FIFO,
    )
    tied = _components(plan) > 1
    net = LavaNetwork({}, {}, {}, {})
    mm = net.model_map
    tie = None
    if tied:
        tie = Tie(name="tie")
        mm[tie] = PyTieModel
    for key, u in plan.units.items():
        shape = u.lava_shape
        if u.kind == "input":
            _add_input_port(net, key, shape, fixed.frac_bits[key] if fx else None, tie, buffer_size, cfg)
            continue
        proc = _make_unit(u, plan, timesteps, fixed if fx else None, sparse_threshold, buffer_size, cfg,
                          fast_models)
        if u.kind == "output":
            net.extractors[key] = proc
            mm[proc] = PyLoihiExtractorModel
        elif u.kind in _FAST_MODELS:
            models = _FAST_MODELS if fast_models else _STOCK_MODELS
            mm[proc] = models[u.kind][fx]
        for p in u.preds:
            _out_port(net.procs[p]).connect(_in_port(proc))
        net.procs[key] = proc
        if u.kind == "lif" and record_spikes:
            ext = Extractor(shape=shape, buffer_size=buffer_size, channel_config=cfg, name=f"{key}#spikes")
            proc.s_out.connect(ext.in_port)
            net.spike_extractors[key] = ext
            mm[ext] = PyLoihiExtractorModel
    net.run_cfg = Loihi2SimCfg(select_tag="fixed_pt" if fx else "floating_pt", exception_proc_model_map=mm)
    net.anchor = next(iter(net.injectors.values()))
    net.n_processes = len(mm)
    return net


def _check_network_args(mode: str, timesteps: int, fixed, fast_models: bool) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "fixed" and fixed is None:
        raise ValueError(
            "mode='fixed' needs a fixed-point plan (respike_neuro.sim.fixed_point.plan_fixed_point)"
        )
    if mode == "fixed" and not fast_models:
        raise ValueError(
            "mode='fixed' needs fast_models=True: Lava's stock fixed-point Conv model ignores "
            "weight_exp, so per-layer weight exponents would be silently dropped"
        )
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    wide = sorted(k for k, q in (fixed.convs.items() if fixed else ()) if q.bits > MAX_WEIGHT_BITS)
    if mode == "fixed" and wide:
        raise ValueError(
            f"{wide[0]} has {fixed.convs[wide[0]].bits}-bit weights; Loihi 2 (and these Lava models) take "
            f"{MAX_WEIGHT_BITS} bits: wider weights run on the emulator backend only"
        )


def _add_input_port(net: LavaNetwork, key: str, shape, frac_bits, tie, buffer_size: int, cfg) -> None:
    """An input port: the host's Injector into a GradedRelay (which quantises in fixed point, frac_bits
    given), started in step with the others by the Tie when the graph has several components."""
    fx = frac_bits is not None
    inj = Injector(shape=shape, buffer_size=buffer_size, channel_config=cfg, name=key)
    relay = GradedRelay(
        shape=shape,
        frac_bits=frac_bits,
        quantize_input=fx,
        tied=tie is not None,
        name=f"{key}#port",
    )
    inj.out_port.connect(relay.a_in)
    if tie is not None:
        tie.s_out.connect(relay.tie)
    net.injectors[key] = inj
    net.model_map[inj] = PyLoihiInjectorModel
    net.model_map[relay] = PyGradedRelayFixed if fx else PyGradedRelayFloat
    net.procs[key] = relay


def _make_unit(u: Unit, plan: Plan, timesteps: int, fixed, sparse_threshold: float, buffer_size: int, cfg,
               fast_models: bool = True):
    shape = u.lava_shape
    if u.kind == "output":
        return Extractor(shape=shape, buffer_size=buffer_size, channel_config=cfg, name=u.key)
    if u.kind == "conv":
        c, h, w = u.in_shape
        kw = dict(
            input_shape=(w, h, c),
            padding=(u.padding[1], u.padding[0]),
            stride=(u.stride[1], u.stride[0]),
            dilation=(u.dilation[1], u.dilation[0]),
            groups=u.groups,
            num_message_bits=0 if u.binary_input else 24,
            name=u.key,
        )
        if fixed is None:
            weight = u.weight
            if not fast_models and u.groups > 127:
                # Lava's stock model stores `groups` as int8: expand a depthwise kernel to a dense one
                weight = np.zeros((u.weight.shape[0], c) + u.weight.shape[2:])
                weight[np.arange(c), np.arange(c)] = u.weight[:, 0]
                kw["groups"] = 1
            proc = Conv(weight=lava_conv_weight(weight), **kw)
        else:
            q = fixed.convs[u.key]
            # Lava's synapse convention (9-bit even weights, (9 - bits) LSBs dropped): the shifted
            # mantissa and lowered exponent carry the same integers, which the fast models compute
            syn = WeightFormat(q.mantissa, q.weight_exp, q.bits).lava_synapse()
            proc = Conv(weight=lava_conv_weight(syn["weights"]), weight_exp=syn["weight_exp"],
                        num_weight_bits=syn["num_weight_bits"], **kw)
        proc.proc_params[SPARSE_THRESHOLD_KEY] = float(sparse_threshold) if u.binary_input else 0.0
        return proc
    if u.kind == "lif":
        offset = (u.latency + 1) % timesteps
        if fixed is None:
            return LIFReset(
                shape=shape,
                du=1.0,
                dv=1.0 - u.beta,
                vth=u.theta,
                bias_mant=to_lava(u.bias),
                reset_interval=timesteps,
                reset_offset=offset,
                name=u.key,
            )
        q = fixed.lifs[u.key]
        return LIFReset(
            shape=shape,
            du=q.du,
            dv=q.dv,
            vth=q.vth,
            bias_mant=to_lava(q.bias_mant),
            bias_exp=to_lava(q.bias_exp),
            reset_interval=timesteps,
            reset_offset=offset,
            name=u.key,
        )
    if u.kind == "relay":
        if fixed is None:
            return GradedRelay(shape=shape, bias=to_lava(u.bias), scale=to_lava(u.scale), name=u.key)
        if not np.all(u.scale == 1.0):
            raise PlanError(f"node {u.key!r}: fixed point supports Scale nodes with unit scale only")
        return GradedRelay(
            shape=shape, bias=to_lava(fixed.relay_bias[u.key]), frac_bits=fixed.frac_bits[u.key], name=u.key
        )
    if u.kind == "delay":
        return GradedDelay(shape=shape, delay=u.delay, name=u.key)
    raise PlanError(f"unit {u.key!r} has unknown kind {u.kind!r}")  # pragma: no cover
