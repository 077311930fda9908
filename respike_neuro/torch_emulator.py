"""The mapped spiking branch in torch: the numpy emulator's arithmetic, batched over clips and time.

`sim/executor.run_plan` evaluates a plan one logical timestep and one clip at a time, in numpy, so it can
stand beside Lava without torch. Here the same plan runs unit by unit over whole (T, S, C, H, W) tensors
(S = segments of every clip in the batch): convolutions, relays and delays are stateless, so time folds
into the batch as in the training model, and only the LIF layers loop over T. A host-fed port is reached
after the whole of the stage it is computed from, so the host fuses a stage for every step in one call.

Fixed point (a `FixedPointPlan`) follows the integer rules of `run_plan` exactly: payloads rint(x 2**f)
saturated to 24 bits; convolutions of integer mantissas summed exactly in float64 (every partial sum
stays far below 2**53; rounded, as run_plan does, so no convolution algorithm can leave it a hair off)
and shifted by the layer's exponent, floor for right shifts; Lava's bit-accurate
LIF (trunc-toward-zero decays, 24-bit wrap of u, clip of v, threshold << 6); relays add the integer bias.
Float mode is the plan's float arithmetic. Tests compare both with `run_plan` spike for spike.

Why not run the numpy emulator per clip: it is one clip and one timestep at a time through numpy's
im2col; this is one torch convolution per layer for a whole batch, on the CPU or a GPU.

Trainable (`trainable=True`, used by respike_neuro/qat.py): the conv weights become real-valued leaf
tensors and every integer operation gets a gradient, while the forward values stay exactly those above:
rounding/floor/trunc pass the gradient straight through (STE), a spike passes the ATan surrogate of the
training neuron (in real membrane units), resets are detached as in the training model. In fixed point
the mantissas are rint(w 2**-e) with the plan's exponent e, clipped to the mantissa range, so the plan's
own weights reproduce its mantissas and training moves them on Loihi's grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from respike_neuro.graph import stage_port
from respike_neuro.sim.loihi import ACT_SHIFT, DECAY_UNITY, DS_OFFSET, STATE_LIMIT, VTH_SHIFT

if TYPE_CHECKING:  # type hints only: importing the fixed-point planner would import Lava
    from respike_neuro.sim.fixed_point import FixedPointPlan
    from respike_neuro.sim.plan import Plan

INT24 = float(STATE_LIMIT)
# (stage k, stage-k output (T, S, C, h, w)) -> the next stage's input, same layout
HostBatchFn = Callable[[int, torch.Tensor], torch.Tensor]


def _ste(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y (round(x), floor(x), ...) forward, the identity's gradient to x backward; exactly y either way."""
    return y.detach() + (x - x.detach()) if x.requires_grad else y


def _spike(v: torch.Tensor, vth: float, scale: float, alpha: float) -> torch.Tensor:
    """v > vth as 0/1; backward: the training neuron's ATan surrogate at (v - vth) / scale real units
    (models/neuron.py: its primitive is atan(pi/2 alpha x) / pi)."""
    s = (v > vth).to(v.dtype)
    if not v.requires_grad:
        return s
    g = torch.atan((v - vth) * (math.pi / 2 * alpha / scale)) / math.pi
    return s + (g - g.detach())


def _stage(port: str) -> int:
    sp = stage_port(port)
    if sp is None or sp[1] != "out":
        raise ValueError(f"host-fed ports must be computed from a stage<k>_out port, got {port!r}")
    return sp[0]


class TorchPlanEmulator:
    """Runs a `Plan` (float) or a `Plan` + `FixedPointPlan` (Loihi 2 integers) on whole batches."""

    def __init__(
        self,
        plan: Plan,
        timesteps: int,
        fixed: FixedPointPlan | None = None,
        *,
        device: str | torch.device = "cpu",
        trainable: bool = False,
        alpha: float = 2.0,
    ) -> None:
        self.plan, self.timesteps, self.fixed = plan, int(timesteps), fixed
        self.device = torch.device(device)
        self.alpha = float(alpha)  # surrogate sharpness on the membrane (neuron.membrane_alpha; trainable)

        def t(a: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device)

        self.weights: dict[str, torch.Tensor] = {}
        self.params: dict[str, torch.Tensor] = {}  # trainable real weights of the non-pooling convs
        self.bias: dict[str, torch.Tensor] = {}
        self.scale: dict[str, torch.Tensor] = {}
        for key, u in plan.units.items():
            if u.kind == "conv":
                if trainable and not u.is_pool:
                    self.params[key] = t(u.weight).requires_grad_(True)
                else:
                    self.weights[key] = t(fixed.convs[key].mantissa if fixed else u.weight)
            elif u.kind == "lif":
                if fixed:
                    q = fixed.lifs[key]
                    self.bias[key] = t(np.left_shift(np.asarray(q.bias_mant, dtype=np.int64),
                                                     np.asarray(q.bias_exp, dtype=np.int64)))
                else:
                    self.bias[key] = t(u.bias)
            elif u.kind == "relay":
                self.bias[key] = t(fixed.relay_bias[key] if fixed else u.bias)
                self.scale[key] = t(u.scale)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def conv_weight(self, key: str) -> torch.Tensor:
        """What the conv multiplies by: the mantissas (fixed point) or the real weights (float)."""
        if key not in self.params:
            return self.weights[key]
        w = self.params[key]
        if self.fixed is None:
            return w
        q = self.fixed.convs[key]
        z = w * 2.0 ** -q.exponent
        return _ste(torch.round(z), z).clamp(-(1 << (q.bits - 1)), (1 << (q.bits - 1)) - 1)

    def deployed_weights(self) -> dict[str, np.ndarray]:
        """Trainable convs' weights as the chip holds them (fixed point: mantissa * 2**exponent, exactly)."""
        with torch.no_grad():
            return {
                k: (self.conv_weight(k) * 2.0 ** self.fixed.convs[k].exponent if self.fixed else w)
                .detach().cpu().numpy()
                for k, w in self.params.items()
            }

    def run(
        self, inputs: dict[str, torch.Tensor], host: HostBatchFn | None = None
    ) -> dict[str, Any]:
        """inputs: port -> (T, S, C, H, W) real values (S segments, state reset for each).

        Returns outputs (port -> (T, S, C, h, w) real), spikes (LIF key -> 0/1 float64 tensor, carrying
        the surrogate gradient when trainable), host_inputs (host-fed port -> what the host returned),
        saturation (unit -> clipped entries, fixed point).
        """
        plan, fixed, T = self.plan, self.fixed, self.timesteps
        val: dict[str, torch.Tensor] = {}
        outputs, spikes, host_in, sat = {}, {}, {}, {}
        for key, u in plan.units.items():
            if u.kind == "input":
                if key in inputs:
                    x = torch.as_tensor(inputs[key], dtype=torch.float64, device=self.device)
                else:
                    if host is None:
                        raise ValueError(f"no data for input port {key!r} and no host function")
                    x = host(_stage(plan.feeds[key]), outputs[plan.feeds[key]]).to(self.device, torch.float64)
                    host_in[key] = x
                if x.shape[0] != T or tuple(x.shape[2:]) != tuple(u.shape):
                    raise ValueError(
                        f"input {key!r}: expected (T={T}, S, *{tuple(u.shape)}), got {tuple(x.shape)}"
                    )
                if fixed:
                    z = x * 2.0 ** fixed.frac_bits[key]
                    x = self._clamp(key, _ste(torch.round(z), z), sat)
                val[key] = x
                continue
            a = val[u.preds[0]]
            for p in u.preds[1:]:
                a = a + val[p]
            if u.kind == "conv":
                w = self.conv_weight(key)
                y = F.conv2d(a.flatten(0, 1), w, None, u.stride, u.padding, u.dilation, u.groups)
                y = y.view(a.shape[:2] + y.shape[1:])
                if fixed:  # the sum is an integer; round() keeps it one under any conv algorithm (FFT...)
                    y, e = _ste(torch.round(y), y), fixed.convs[key].weight_exp
                    z = y * 2.0**e
                    y = self._clamp(key, z if e >= 0 else _ste(torch.floor(z), z), sat)
            elif u.kind == "lif":
                y = self._lif(key, a, sat)
                spikes[key] = y
            elif u.kind == "relay":
                y = a + self.bias[key]
                y = self._clamp(key, y, sat) if fixed else self.scale[key] * y
            else:  # delay (identity in logical time) and output
                y = a
            val[key] = y
            if u.kind == "output":
                outputs[key] = y * 2.0 ** -fixed.frac_bits[u.preds[0]] if fixed else y
        return {"outputs": outputs, "spikes": spikes, "host_inputs": host_in, "saturation": sat}

    @staticmethod
    def _clamp(key: str, y: torch.Tensor, sat: dict[str, int]) -> torch.Tensor:
        hi = INT24 - 1
        sat[key] = sat.get(key, 0) + int(((y > hi) | (y < -hi)).sum())
        return y.clamp(-hi, hi)

    def _lif(self, key: str, a: torch.Tensor, sat: dict[str, int]) -> torch.Tensor:
        u_ = self.plan.units[key]
        bias = self.bias[key]
        out = []
        v = torch.zeros_like(a[0])
        if self.fixed is None:
            keep = 1 - (1.0 - u_.beta)  # as run_plan writes it (dv = 1 - beta), bit for bit
            for t in range(a.shape[0]):
                v = v * keep + a[t] + bias
                out.append(_spike(v, u_.theta, 1.0, self.alpha))
                v = v.masked_fill(v > u_.theta, 0.0)
            return torch.stack(out)
        q = self.fixed.lifs[key]
        keep_v, vth = float(DECAY_UNITY - q.dv), float(q.vth << VTH_SHIFT)
        act = float(1 << ACT_SHIFT)
        v_scale = act * 2.0 ** self.fixed.frac_bits[key + "#in"]  # integer v per real unit
        u = torch.zeros_like(a[0])
        bad = 0
        for t in range(a.shape[0]):
            # u: du = 4095 decays it fully; written as Lava computes it so other du stay exact
            z = u * float(DECAY_UNITY - (q.du + DS_OFFSET)) / float(DECAY_UNITY)
            dc = _ste(torch.trunc(z), z) + a[t] * act
            bad += int(((dc > INT24) | (dc <= -INT24)).sum())
            u = torch.where(dc > INT24, dc - 2 * INT24, dc)
            u = torch.where(u <= -INT24, dc + 2 * INT24, u)
            z = v * keep_v / float(DECAY_UNITY)
            nv = _ste(torch.trunc(z), z) + u + bias
            bad += int(((nv > INT24 - 1) | (nv < -INT24 + 1)).sum())
            v = nv.clamp(-(INT24 - 1), INT24 - 1)
            out.append(_spike(v, vth, v_scale, self.alpha))
            v = v.masked_fill(v > vth, 0.0)
        sat[key] = sat.get(key, 0) + bad
        return torch.stack(out)


def run_segments(
    emulator: TorchPlanEmulator,
    residual: torch.Tensor,
    host: HostBatchFn | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """residual (S, T, 3, H, W) segments -> run() results in the bridge's order (index = segment*T + t),
    as float64/bool numpy arrays, and timings in the runtime's keys. `host` sees and returns (S*T, C, h, w)
    in that order too."""
    host_s = 0.0

    def timed(stage: int, x: torch.Tensor) -> torch.Tensor:  # (T, S, ...) <-> the bridge's (S*T, ...)
        nonlocal host_s
        h0 = time.perf_counter()
        y = host(stage, x.transpose(0, 1).flatten(0, 1))
        host_s += time.perf_counter() - h0
        return y.view(x.shape[1], x.shape[0], *y.shape[1:]).transpose(0, 1)

    t0 = time.perf_counter()
    res = emulator.run({"residual_in": residual.transpose(0, 1)}, host=timed if host else None)
    wall = time.perf_counter() - t0

    def seq_major(x: torch.Tensor) -> np.ndarray:
        return x.detach().transpose(0, 1).flatten(0, 1).cpu().numpy()

    n = residual.shape[0] * residual.shape[1]
    res = {
        "outputs": {k: seq_major(v) for k, v in res["outputs"].items()},
        "spikes": {k: seq_major(v.bool()) for k, v in res["spikes"].items()},
        "host_inputs": {k: seq_major(v) for k, v in res["host_inputs"].items()},
        "saturation": res["saturation"],
    }
    timings = {"steps": float(n), "wall_s": wall, "ms_per_step": 1e3 * wall / n,
               "host_callback_s": host_s, "startup_s": 0.0, "n_processes": 0.0}
    return res, timings
