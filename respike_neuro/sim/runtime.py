"""Run a ReSpike spiking branch in Lava with the host in the loop.

Scheduling / latency model. Lava steps are grouped in slots of T steps (T = timesteps per segment).
Segment s of a call occupies slot s; a unit with latency L (see plan.py) processes logical step t of
segment s at Lava step s*T + t + L, and every LIF resets itself at its own logical step 0, so segments
pipeline back to back through the network without sharing state. A call with N segments runs
(N + ceil(L_max / T)) * T Lava steps (the tail drains the pipeline and keeps slots aligned for the next
call), e.g. 1 segment of T=3 through a 4-stage ResNet-18 (L_max = 17) takes 21 steps, 4 segments 30.

Host ports: Output `stage{k}_out` carries logical step t at Lava step t + L(stage{k}_out); the host
callback gets it during that very step and its answer is injected as `stage{k+1}_in` in the same step
(the Injector blocks until the host sends, while the rest of the step proceeds), so the host adds no
Lava steps. Per step the host walks the ports in topological order: send inputs, receive outputs
(calling the host where an output feeds an input), then drain the spike recorders.

Failures (exception in a host callback, bad shapes, Ctrl-C, a step that does not complete within
`step_timeout`) stop the Lava runtime; if Lava cannot be stopped cleanly its processes are terminated.
Signals (lifecycle.py): Lava's children die with this process, SIGINT/SIGTERM during start-up are held
until the runtime can be torn down, SIGTERM during a run raises `Terminated` (exit 143 in the CLIs), and
the runtime's /dev/shm segments are unlinked on every way out.

Backends: "cpu" (Lava's CPU simulation), "loihi2" (Intel's hardware run configuration, when its
backend is installed) and "emulator": no Lava processes; the numpy executor (sim/executor.py) runs
the same plan with the same integer rules, bit-exact with the Lava fixed-point run (tested) and
about 3x faster on small models (no inter-process messaging), for evaluating a quantisation over many clips.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from respike_neuro.graph import stage_of
from respike_neuro.sim import channels, lifecycle
from respike_neuro.sim.backends import (
    BACKENDS,
    BackendUnavailable,
    check_backend,
    loihi2_backend_available,
    loihi2_run_cfg,
)
from respike_neuro.sim.executor import run_plan
from respike_neuro.sim.fixed_point import pinned_frac_bits, pinned_weight_bits, plan_fixed_point
from respike_neuro.sim.kernels import from_lava, to_lava
from respike_neuro.sim.loihi import MAX_WEIGHT_BITS
from respike_neuro.sim.mapping import MODES, build_network
from respike_neuro.sim.plan import Plan, build_plan

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "HostFn",
    "LavaSpikingBranch",
    "SegmentResult",
    "describe_quantization",
    "loihi2_backend_available",
]

HostFn = Callable[[int, int, np.ndarray], np.ndarray]


@dataclass
class SegmentResult:
    """What one call returned, aligned to logical timesteps (index = segment * T + t)."""

    outputs: dict[str, np.ndarray]  # port -> (N*T, C, H, W) float
    spikes: dict[str, np.ndarray]  # LIF key -> (N*T, C, H, W) bool
    host_inputs: dict[str, np.ndarray]  # host-fed port -> (N*T, C, H, W) what was injected
    latency: dict[str, int]  # port -> Lava steps from logical step to port
    timings: dict[str, float] = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)  # fixed mode: saturation counts, emulator cross-check

    def spike_rates(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.spikes.items()}


def describe_quantization(q: dict) -> str:
    """One line on a fixed-point call's `quantization` record: saturations and the emulator cross-check."""
    check = (
        f"Lava bit-exact with the integer emulator: {q['bit_exact_with_emulator']}"
        if "bit_exact_with_emulator" in q
        else f"run on the {q.get('engine', 'emulator')} backend (no Lava)"
    )
    return f"saturated values {q['saturated_total']}; {check}"


class LavaSpikingBranch(lifecycle.ClosedOnExit):
    """A NIR spiking branch compiled to Lava, run segment by segment with optional host callbacks.

    graph: nir.NIRGraph or path. mode: "float" or "fixed" (Loihi 2 widths). backend: "cpu" (Lava's
    Python simulation) or "loihi2" (Intel's proprietary backend; raises BackendUnavailable here).
    fast_models: use the vectorised Conv and leaner LIFReset models (False = Lava's stock models; fixed
    point needs the fast Conv, which applies the weight exponent).
    timesteps: T per segment (default: graph metadata timesteps_per_segment).
    calibration: for mode="fixed", {port: (T', C, H, W)} inputs for the float run that measures
    activation ranges (default: N(0,1) inputs, seeded). Unused when the graph's metadata pins the
    formats (a quantisation-aware fine-tuned model, respike_neuro/qat.py).
    weight_bits: fixed mode: weight mantissa bits (default: the width such a graph was fine-tuned for,
    else 8 = Loihi 2's synapse width; up to 16 on the emulator backend, for diagnosis).
    startup_timeout: seconds Lava may take to fork and build its processes before StartupTimeout
    (a killed child otherwise leaves the start-up waiting forever).
    """

    def __init__(
        self,
        graph,
        *,
        mode: str = "float",
        backend: str = "cpu",
        fast_models: bool = True,
        timesteps: int | None = None,
        record_spikes: bool = True,
        dt: float | None = None,
        feeds: dict[str, str] | None = None,
        calibration: dict[str, np.ndarray] | None = None,
        step_timeout: float = 60.0,
        sparse_threshold: float = 0.1,
        weight_bits: int | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        check_backend(backend, mode)
        self.plan: Plan = build_plan(graph, dt=dt, feeds=feeds)
        t_meta = self.plan.metadata.get("timesteps_per_segment")
        if timesteps is None and t_meta is not None:
            timesteps = int(np.asarray(t_meta).reshape(-1)[0])
        if timesteps is None or int(timesteps) < 1:
            raise ValueError(
                "timesteps per segment unknown: the graph metadata has no timesteps_per_segment; "
                "pass timesteps="
            )
        self.timesteps = int(timesteps)
        self.mode, self.backend, self.fast_models = mode, backend, fast_models
        self.step_timeout = float(step_timeout)
        if not startup_timeout > 0:
            raise ValueError(f"startup_timeout must be > 0 s, got {startup_timeout!r}")
        self.startup_timeout = float(startup_timeout)
        self.fixed = None
        self.weight_bits = MAX_WEIGHT_BITS
        if mode == "fixed":
            self._plan_fixed_point(weight_bits, calibration)
        self.net = (
            None
            if backend == "emulator"
            else build_network(
                self.plan,
                timesteps=self.timesteps,
                mode=mode,
                fast_models=fast_models,
                record_spikes=record_spikes,
                fixed=self.fixed,
                sparse_threshold=sparse_threshold,
            )
        )
        if backend == "loihi2":
            self.net.run_cfg = loihi2_run_cfg(self.net)
        self._started = False
        self._ran = False  # a run was issued: Lava's clean stop() only returns after one
        self._closed = False
        self._broken = False
        self._holds_signals = False  # this runtime counts in lifecycle's SIGTERM handling
        self._startup: lifecycle.Deferred | None = None  # what this runtime's start-up forked
        self.startup_s = 0.0

    def _plan_fixed_point(self, weight_bits: int | None, calibration: dict[str, np.ndarray] | None) -> None:
        # a quantisation-aware model: formats (and unless overridden, weight width) are its own
        pinned = pinned_frac_bits(self.plan.metadata)
        if weight_bits is None:
            weight_bits = pinned_weight_bits(self.plan.metadata) or MAX_WEIGHT_BITS
        self.weight_bits = int(weight_bits)
        self.fixed = plan_fixed_point(
            self.plan,
            self.timesteps,
            calibration=None if pinned else calibration,
            weight_bits=self.weight_bits,
            frac_bits=pinned,
        )

    @property
    def n_processes(self) -> int:
        """Lava processes of the mapped network (0 for the emulator backend)."""
        return 0 if self.net is None else int(self.net.n_processes)

    # ----------------------------------------------------------------------------------------- ports
    @property
    def input_ports(self) -> list[str]:
        return list(self.plan.inputs)

    @property
    def output_ports(self) -> list[str]:
        return list(self.plan.outputs)

    @property
    def port_latency(self) -> dict[str, int]:
        return {p: self.plan.port_latency(p) for p in self.plan.inputs + self.plan.outputs}

    def steps_for(self, n_segments: int) -> int:
        return (n_segments + math.ceil(self.plan.max_latency / self.timesteps)) * self.timesteps

    # ------------------------------------------------------------------------------------- running
    def run_segment(
        self,
        residual_frames: np.ndarray | None = None,
        host: HostFn | None = None,
        inputs: dict[str, np.ndarray] | None = None,
    ) -> SegmentResult:
        """One segment: residual_frames (T, 3, H, W); host(stage, t, stage_out) -> stage{k+1}_in."""
        data = dict(inputs or {})
        if residual_frames is not None:
            data["residual_in"] = residual_frames
        return self.run(data, host=host, n_segments=1)

    def run_clip(
        self,
        residual_segments: np.ndarray,
        host: HostFn | None = None,
        inputs: dict[str, np.ndarray] | None = None,
    ) -> SegmentResult:
        """Several segments pipelined: residual_segments (N, T, 3, H, W); host t = segment*T + step."""
        rs = np.asarray(residual_segments)
        if rs.ndim != 5:
            raise ValueError(f"residual_segments must be (N, T, 3, H, W), got shape {rs.shape}")
        data = dict(inputs or {})
        data["residual_in"] = rs.reshape((-1,) + rs.shape[2:])
        return self.run(data, host=host, n_segments=rs.shape[0])

    def run(
        self, inputs: dict[str, np.ndarray], host: HostFn | None = None, n_segments: int = 1
    ) -> SegmentResult:
        """Core loop: inputs maps Input port -> (n_segments*T, C, H, W); host-fed ports may use `host`."""
        if self._closed or self._broken:
            raise RuntimeError(
                "this LavaSpikingBranch is closed"
                if self._closed
                else "the Lava runtime was stopped after an earlier failure; build a new LavaSpikingBranch"
            )
        if host is not None and not callable(host):
            raise TypeError(f"host must be callable(stage, t, array) -> array, got {type(host).__name__}")
        n_log = int(n_segments) * self.timesteps
        data = self._check_inputs(inputs, host, n_log)
        if self.net is None:
            return self._emulate(data, host)
        self.start()
        self._ran = True
        steps = self.steps_for(int(n_segments))
        t0 = time.perf_counter()
        try:
            outs, spikes, host_in, host_s = self._step_through(data, host, n_log, steps)
        except BaseException:
            self._abort()
            raise
        wall = time.perf_counter() - t0
        timings = {
            "steps": float(steps),
            "wall_s": wall,
            "ms_per_step": 1e3 * wall / steps,
            "host_callback_s": host_s,
            "startup_s": self.startup_s,
            "n_processes": float(self.n_processes),
        }
        res = SegmentResult(outs, spikes, host_in, self.port_latency, timings)
        if self.fixed is not None:
            res.quantization = self._shadow(data, res)
        return res

    def _step_through(self, data: dict[str, np.ndarray], host: HostFn | None, n_log: int, steps: int):
        """Run `steps` Lava steps, walking the ports in topological order each step (module docstring);
        returns outputs, spikes, host-fed inputs per logical step and the seconds spent in `host`."""
        from lava.magma.core.run_conditions import RunSteps

        plan = self.plan
        lat = self.port_latency
        outs = {o: np.zeros((n_log,) + plan.units[o].shape) for o in plan.outputs}
        spikes = {k: np.zeros((n_log,) + plan.units[k].shape, dtype=bool) for k in self.net.spike_extractors}
        host_in = {i: np.zeros((n_log,) + plan.units[i].shape) for i in plan.feeds if i not in data}
        order = [k for k in plan.units if k in lat]
        feeds_from = {o: i for i, o in plan.feeds.items() if i in host_in}
        pending: dict[str, np.ndarray] = {}
        zeros = {p: np.zeros(plan.units[p].lava_shape) for p in plan.inputs}
        host_s = 0.0
        anchor = self.net.anchor
        anchor.run(condition=RunSteps(num_steps=steps, blocking=False), run_cfg=self.net.run_cfg)
        for n in range(steps):
            for port in order:
                t = n - lat[port]
                valid = 0 <= t < n_log
                if port in self.net.injectors:
                    if port in host_in:
                        x = pending.pop(port, None)
                        msg = zeros[port] if x is None else x
                    else:
                        msg = to_lava(data[port][t]) if valid else zeros[port]
                    channels.send(self.net.injectors[port], msg, self.step_timeout)
                    continue
                y = self._decode(port, self._recv(self.net.extractors[port]))
                if valid:
                    outs[port][t] = from_lava(y)
                tgt = feeds_from.get(port)
                if tgt is not None and valid and host is not None:
                    h0 = time.perf_counter()
                    x = self._call_host(host, port, t, outs[port][t], tgt)
                    host_s += time.perf_counter() - h0
                    host_in[tgt][t] = x
                    pending[tgt] = to_lava(x)
            for k, ext in self.net.spike_extractors.items():
                s = self._recv(ext)
                t = n - plan.units[k].latency
                if 0 <= t < n_log:
                    spikes[k][t] = from_lava(s) > 0
        anchor.wait()
        return outs, spikes, host_in, host_s

    def _emulate(self, data: dict[str, np.ndarray], host: HostFn | None) -> SegmentResult:
        """The "emulator" backend: the whole call in the numpy executor, no Lava processes."""
        plan = self.plan
        target = {src: port for port, src in plan.feeds.items()}
        host_s = 0.0

        def checked(stage: int, t: int, y: np.ndarray) -> np.ndarray:
            nonlocal host_s
            h0 = time.perf_counter()
            port = f"stage{stage}_out"
            x = self._call_host(host, port, t, y, target[port])
            host_s += time.perf_counter() - h0
            return x

        t0 = time.perf_counter()
        em = run_plan(plan, data, self.timesteps, host=checked if host else None, fixed=self.fixed)
        wall = time.perf_counter() - t0
        n = len(next(iter(data.values())))  # logical steps (residual_in is always given)
        timings = {
            "steps": float(n),
            "wall_s": wall,
            "ms_per_step": 1e3 * wall / n,
            "host_callback_s": host_s,
            "startup_s": 0.0,
            "n_processes": 0.0,
        }
        res = SegmentResult(em.outputs, em.spikes, em.host_inputs, self.port_latency, timings)
        if self.fixed is not None:
            res.quantization = {
                "saturation": em.saturation,
                "saturated_total": int(sum(em.saturation.values())),
                "engine": "emulator",
            }
        return res

    def _shadow(self, data: dict[str, np.ndarray], res: SegmentResult) -> dict:
        """Re-run the call in the numpy fixed-point emulator (same integer rules as the Lava models) to
        count saturations, which Lava's stock LIF model cannot report, and check the two agree."""
        inputs = dict(data)
        inputs.update(res.host_inputs)
        em = run_plan(self.plan, inputs, self.timesteps, fixed=self.fixed)
        same = all(np.array_equal(em.spikes[k], v) for k, v in res.spikes.items()) and all(
            np.array_equal(em.outputs[o], v) for o, v in res.outputs.items()
        )
        return {
            "saturation": em.saturation,
            "saturated_total": int(sum(em.saturation.values())),
            "engine": "lava",
            "bit_exact_with_emulator": bool(same),
        }

    def _check_inputs(self, inputs, host, n_log) -> dict[str, np.ndarray]:
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict port -> array, got {type(inputs).__name__}")
        plan = self.plan
        out = {}
        for port, arr in inputs.items():
            if port not in plan.inputs:
                raise ValueError(f"unknown input port {port!r}; the graph has {plan.inputs}")
            a = np.asarray(arr, dtype=np.float64)
            want = (n_log,) + plan.units[port].shape
            if a.shape != want:
                raise ValueError(f"input {port!r} has shape {a.shape}, expected {want} (timesteps, C, H, W)")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"input {port!r} contains NaN or inf")
            out[port] = a
        for port in plan.inputs:
            if port in out:
                continue
            if port in plan.feeds and host is not None:
                continue
            raise ValueError(
                f"no data for input port {port!r}: pass it in inputs"
                + (" or give a host callback" if port in plan.feeds else "")
            )
        return out

    def _call_host(self, host, port, t, y, target) -> np.ndarray:
        x = host(stage_of(port), t, y.copy())
        x = np.asarray(x, dtype=np.float64)
        want = self.plan.units[target].shape
        if x.shape != want:
            raise ValueError(
                f"host callback for {port!r} at t={t} returned shape {x.shape}, {target!r} needs {want}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"host callback for {port!r} at t={t} returned NaN or inf")
        return x

    def _decode(self, port: str, y: np.ndarray) -> np.ndarray:
        if self.fixed is None:
            return np.asarray(y, dtype=np.float64)
        src = self.plan.units[port].preds[0]
        return np.asarray(y, dtype=np.float64) / 2.0 ** self.fixed.frac_bits[src]

    def _recv(self, ext) -> np.ndarray:
        def check() -> None:
            lifecycle.raise_if_a_process_died(self._runtime())

        return channels.recv(ext, self.step_timeout, check)

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Compile the Lava network and fork its processes now (idempotent; `run` starts lazily).

        Call it before CUDA is initialised in this process when the host side uses a GPU: the Lava
        runtime forks, and a forked child cannot use the parent's CUDA context."""
        if self._closed or self._broken:
            raise RuntimeError("this LavaSpikingBranch is closed")
        if self._started or self.net is None:
            return
        t0 = time.perf_counter()
        lifecycle.track(self)
        lifecycle.acquire_lifetime()
        self._holds_signals = True
        startup = None
        try:
            # a signal inside Lava's start-up would leave it half-built: held, raised once it is built
            with lifecycle.deferred_signals(self.startup_timeout, forks=True) as startup:
                self.net.anchor.create_runtime(run_cfg=self.net.run_cfg)
        except BaseException:
            self._startup = startup
            self._abort()
            raise
        self._startup = startup
        self._started = True
        self.startup_s = time.perf_counter() - t0

    def _runtime(self):
        return getattr(self.net.anchor, "runtime", None) or getattr(self.net.anchor, "_runtime", None)

    def _abort(self) -> None:
        """Stop Lava after a failure; terminate its processes if a clean stop does not finish quickly."""
        self._broken = True
        rt = self._runtime()
        # Lava processes may be blocked on host I/O mid-step, where a clean stop() never returns; a
        # second Ctrl-C/SIGTERM must not cut the teardown short: held until it is done
        try:
            with lifecycle.deferred_signals():
                self._kill(rt, self._startup)
        finally:
            self._release_signals()  # after the held handlers are back: it restores the ones before

    def _release_signals(self) -> None:
        if self._holds_signals:
            self._holds_signals = False
            lifecycle.release_lifetime()

    _kill = staticmethod(lifecycle.kill_runtime)  # (rt, startup): the teardown of every way out

    def close(self) -> None:
        """Stop the Lava runtime (idempotent); terminates its processes if a clean stop hangs."""
        if self._closed:
            return
        self._closed = True
        if not self._started or self._broken:
            return
        # a signal in the middle of the stop would leave it half-done: held, raised once it is done
        try:
            with lifecycle.deferred_signals():
                self._stop()
        finally:
            self._release_signals()

    def _stop(self) -> None:
        if not self._ran:  # nothing to flush, and Lava 0.10's stop() blocks on a never-run runtime
            self._kill(self._runtime(), self._startup)
            return
        done = threading.Event()

        def lava_stop() -> None:
            try:
                self.net.anchor.stop()
            finally:
                done.set()

        th = threading.Thread(target=lava_stop, daemon=True)
        th.start()
        if not done.wait(timeout=max(10.0, self.step_timeout)):
            self._kill(self._runtime(), self._startup)
