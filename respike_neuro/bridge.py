"""Host <-> Lava bridge: ANN, cross-attention and head on the host (torch), spiking branch in Lava (NIR).

This is the one module where torch and Lava meet. Lava runs every ProcessModel in a forked OS process
and sets the 'fork' start method when its messaging layer is imported, so that module is imported here
before torch, and the Lava runtime is started (its processes forked) before the host model touches a
GPU. Nothing torch-related ever runs inside a Lava process: the host callback runs in this process.

Per clip (T frames, stride s, N = T/s segments, T' = timesteps per segment):
  host:  ANN on each segment's key frame        -> a_1..a_4 (one set per segment)
  Lava:  residual frame t of segment n          -> stem + stage 1 -> stage1_out[n, t]
  host:  fuse_1(stage1_out[n, t], a_1[n])       -> stage2_in[n, t]  (same Lava step, see sim/runtime.py)
  ...    stage 2, 3 likewise; stage4_out leaves Lava for good
  host:  x_4 = fuse_4(stage4_out, a_4);  logits_n = W [pool(a_4[n]), mean_t pool(x_4[n, t])] + b
  logits = mean_n logits_n
SNN-only and no-attention (E8) models have no host ports inside the graph: Lava runs all four stages
and the head reads stage4_out directly (E8 concatenates the key-frame ANN vector, SNN-only does not).

Why float64 on the host by default: Lava's float models compute in float64, and a spike is a threshold
test v > theta. A float32 host would hand Lava fused features rounded differently from a float64
PyTorch reference, and any neuron whose membrane lands within that rounding of theta would flip, after
which the difference propagates. With both sides in float64 the only differences are summation order
(~1e-15), so spikes are identical in practice and logits agree to ~1e-12.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from respike_neuro.sim.lifecycle import import_lava_runtime

import_lava_runtime()  # Lava sets the 'fork' start method: before torch and its DataLoaders

import numpy as np
import torch

from respike_neuro.checkpoint import CheckpointError
from respike_neuro.config import ModelConfig
from respike_neuro.engines import BRIDGE_BACKENDS, MODES
from respike_neuro.host import (
    calibration_inputs,
    expected_ports,
    host_context,
    load_host_model,
    reference_outputs,
    sequence_logits,
)
from respike_neuro.models.hybrid import branch_frames
from respike_neuro.sim.fixed_point import pinned_frac_bits
from respike_neuro.sim.lifecycle import ClosedOnExit
from respike_neuro.sim.loihi import MAX_WEIGHT_BITS
from respike_neuro.sim.plan import PlanError, load_graph, meta_value
from respike_neuro.sim.resources import Loihi2Limits, loihi2_report
from respike_neuro.sim.runtime import LavaSpikingBranch, SegmentResult
from respike_neuro.torch_emulator import TorchPlanEmulator, run_segments

BACKENDS = BRIDGE_BACKENDS  # torch: torch_emulator (batched, CPU or GPU); see respike_neuro/engines.py

__all__ = ["BridgeError", "HybridBridge", "HybridResult", "sha256_of", "calibration_inputs"]


class BridgeError(ValueError):
    """The checkpoint, NIR file or clip cannot be used together; the message names which and why."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class HybridResult:
    """One clip through host + Lava. Spikes/outputs are per logical timestep, index = segment * T' + t."""

    logits: np.ndarray  # (K,) averaged over segments
    prediction: int
    segment_logits: np.ndarray  # (N, K)
    spikes: dict[str, np.ndarray]  # LIF layer -> (N*T', C, H, W) bool
    outputs: dict[str, np.ndarray]  # Lava output port -> (N*T', C, H, W)
    host_inputs: dict[str, np.ndarray]  # host-fed port -> (N*T', C, H, W): the fused features sent to Lava
    timings: dict[str, Any]  # of the whole call (shared by the clips of one batch)
    traffic: dict[str, Any]
    quantization: dict = field(default_factory=dict)

    @property
    def spike_counts(self) -> dict[str, int]:
        return {k: int(v.sum()) for k, v in self.spikes.items()}

    @property
    def spike_rates(self) -> dict[str, float]:
        """Fraction of neurons spiking per timestep, per LIF layer."""
        return {k: float(v.mean()) for k, v in self.spikes.items()}


class HybridBridge(ClosedOnExit):
    """Checkpoint (+ its NIR export) -> host model + Lava spiking branch, streaming clips through both.

    checkpoint: path of a training checkpoint. nir: the exported spiking branch (export/to_nir.py); when
    None the branch is exported on the fly into a temporary file. mode: "float" | "fixed" (Loihi 2
    widths). backend: "cpu" | "loihi2" | "emulator" (sim/runtime.py) | "torch" (torch_emulator.py:
    the emulator's arithmetic batched in torch, CPU or GPU). device: host torch device
    (default: cuda when available).
    host_dtype: torch dtype of the host model (float64 by default, see the module docstring).
    calibration: fixed mode only: clips (B, T, 3, H, W) whose golden trace sets the fixed-point ranges
    (default: `calibration_clips` built-in synthetic training clips; 0 = Lava's N(0,1) default).
    weight_bits: fixed mode: weight mantissa bits (default: the width a fine-tuned NIR pins, else 8 =
    Loihi 2; up to 16 on the emulator backend, for diagnosis).
    record_spikes: bring every LIF layer's spikes back from Lava (one Extractor process each); False
    when only logits are wanted (evaluation): ~15 % faster for the default model.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        nir: str | os.PathLike | None = None,
        *,
        mode: str = "float",
        backend: str = "cpu",
        device: str | torch.device | None = None,
        host_dtype: torch.dtype = torch.float64,
        fast_models: bool = True,
        calibration: torch.Tensor | None = None,
        calibration_clips: int = 8,
        step_timeout: float = 60.0,
        weight_bits: int | None = None,
        record_spikes: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'float' or 'fixed', got {mode!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if host_dtype not in (torch.float32, torch.float64):
            raise TypeError(f"host_dtype must be torch.float32 or torch.float64, got {host_dtype}")
        self.checkpoint = Path(checkpoint)
        self.model, self.state = load_host_model(self.checkpoint)
        cfg: ModelConfig = self.model.cfg
        if not cfg.has_snn:
            raise BridgeError(
                f"checkpoint {self.checkpoint}: architecture {cfg.architecture!r} has no spiking branch; "
                "there is nothing to run in Lava"
            )
        self.cfg = cfg
        self.class_names = list(self.state.get("class_names") or [str(i) for i in range(cfg.num_classes)])
        self.mode, self.backend = mode, backend
        self.host_dtype = host_dtype
        self.model = self.model.to(host_dtype)
        graph = self.graph = self._load_graph(nir)
        cal = None
        t0 = time.perf_counter()
        # a quantisation-aware fine-tuned graph (respike_neuro/qat.py) pins its formats: nothing to calibrate
        self.pinned_formats = pinned_frac_bits(graph.metadata) is not None
        if mode == "fixed" and not self.pinned_formats:
            cal = self._calibration(calibration, calibration_clips)
        self.calibration_s = time.perf_counter() - t0
        self.spiking = LavaSpikingBranch(
            graph,
            mode=mode,
            backend="emulator" if backend == "torch" else backend,
            fast_models=fast_models,
            calibration=cal,
            step_timeout=step_timeout,
            weight_bits=weight_bits,
            record_spikes=record_spikes,
        )
        self._check_plan_ports()
        # weight memory at the deployed mantissa width (wider than 8 bits is an emulator-only diagnostic)
        bits = self.spiking.weight_bits
        deployed = mode == "fixed" and bits <= MAX_WEIGHT_BITS
        self.resources = loihi2_report(graph, limits=Loihi2Limits(weight_bits=bits) if deployed else None)
        self.timesteps = self.spiking.timesteps
        self._closed = False
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            self._start_before_cuda()
        self.model = self.model.to(self.device)
        # backend "torch": the emulator's plan and integer formats, run batched by torch_emulator
        self.torch_emulator = (
            TorchPlanEmulator(self.spiking.plan, self.timesteps, self.spiking.fixed, device=self.device)
            if backend == "torch" else None
        )

    def _start_before_cuda(self) -> None:
        """Fork the Lava processes now, before the host model initialises CUDA in this process (on CPU
        they start lazily at the first clip)."""
        if torch.cuda.is_initialized():
            warnings.warn(
                "CUDA was initialised before the Lava runtime forked its processes; create the "
                "HybridBridge before using the GPU elsewhere",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            self.spiking.start()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------- contract checks
    def _load_graph(self, nir: str | os.PathLike | None):
        """The NIR graph to run: the given file, or an export on the fly; checked against the checkpoint."""
        sha = sha256_of(self.checkpoint)
        if nir is None:
            graph, self.nir_path = self._export_temporary(sha), None
        else:
            self.nir_path = Path(nir)
            graph = load_graph(self.nir_path)  # PlanError (a ValueError) for missing / non-NIR files
        self._check_graph(graph, sha)
        return graph

    def _export_temporary(self, sha: str):
        """Export to a temporary NIR file and read it back (the same path as a user's file)."""
        import nir

        from respike_neuro.export.nir_graph import build_nir_graph

        fd, tmp = tempfile.mkstemp(prefix="respike-", suffix=".nir")
        os.close(fd)
        try:
            nir.write(tmp, build_nir_graph(self.model, checkpoint_sha256=sha))
            return load_graph(tmp)
        finally:
            os.unlink(tmp)

    def _where(self) -> str:
        return f"NIR file {self.nir_path}" if self.nir_path else "on-the-fly NIR export"

    def _check_graph(self, graph, sha: str) -> None:
        meta = dict(graph.metadata or {})
        have = meta_value(meta, "checkpoint_sha256")
        if have is None or not isinstance(meta.get("model_config"), (str, bytes, np.ndarray)):
            raise BridgeError(
                f"{self._where()} has no respike-neuro export metadata (checkpoint_sha256, model_config); "
                "export it with export/to_nir.py"
            )
        if not have:
            raise BridgeError(
                f"{self._where()} records no checkpoint hash (it was built from an in-memory model); "
                f"re-export it from {self.checkpoint} with export/to_nir.py"
            )
        if have != sha:
            raise BridgeError(
                f"{self._where()} was exported from a different checkpoint: its checkpoint_sha256 is "
                f"{have[:12]}..., {self.checkpoint} has {sha[:12]}...; re-export with export/to_nir.py"
            )
        try:
            theirs = json.loads(meta_value(meta, "model_config"))
        except (TypeError, ValueError):
            raise BridgeError(f"{self._where()}: metadata model_config is not valid JSON") from None
        ours = json.loads(json.dumps(self.cfg.to_dict()))
        diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if diff:
            raise BridgeError(
                f"{self._where()} does not match {self.checkpoint}: model config differs in "
                + ", ".join(f"{k} ({theirs.get(k)!r} vs {ours.get(k)!r})" for k in diff[:5])
            )

    def _check_plan_ports(self) -> None:
        ins, outs = expected_ports(self.model)
        plan = self.spiking.plan
        have_in = {p: list(plan.units[p].shape) for p in plan.inputs}
        have_out = {p: list(plan.units[p].shape) for p in plan.outputs}
        if have_in != ins or have_out != outs:
            self.spiking.close()
            raise BridgeError(
                f"{self._where()}: ports {have_in} -> {have_out} do not fit the checkpoint's model, which "
                f"needs {ins} -> {outs}"
            )
        t_model = branch_frames(
            torch.zeros(1, self.cfg.frames, 3, 1, 1), self.cfg.stride, self.cfg.inputs, "snn"
        )
        if self.spiking.timesteps != t_model.shape[2]:
            self.spiking.close()
            raise BridgeError(
                f"{self._where()}: {self.spiking.timesteps} timesteps per segment, the model uses "
                f"{t_model.shape[2]}"
            )

    def _calibration(self, clips: torch.Tensor | None, n: int) -> dict[str, np.ndarray] | None:
        ports = [k for k, v in self.graph.nodes.items() if type(v).__name__ == "Input"]
        if clips is None:
            if n <= 0:
                return None
            from respike_neuro.data.synthetic import SyntheticActions, trained_distribution

            ds = SyntheticActions(
                split="train", num_clips=n, frames=self.cfg.frames, resolution=self.cfg.resolution,
                stride=self.cfg.stride, **trained_distribution(self.state.get("train_config")),
            )
            clips = torch.stack([ds[i][0] for i in range(n)])
        clips = self._as_clips(clips, "calibration")
        with torch.no_grad():
            return calibration_inputs(self.model, clips.to(self.host_dtype), ports)

    # ------------------------------------------------------------------------------------- running
    def _as_clips(self, clips, what: str = "clip") -> torch.Tensor:
        if isinstance(clips, np.ndarray):
            clips = torch.from_numpy(clips)
        if not isinstance(clips, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(clips).__name__}")
        if clips.dim() == 4:
            clips = clips.unsqueeze(0)
        cfg = self.cfg
        want = (cfg.frames, 3, cfg.resolution, cfg.resolution)
        if clips.dim() != 5 or tuple(clips.shape[1:]) != want:
            raise BridgeError(
                f"{what} has shape {tuple(clips.shape)}; the model needs (T, 3, H, W) = {want} "
                "or a batch (B, T, 3, H, W)"
            )
        if not torch.is_floating_point(clips):
            raise BridgeError(f"{what} must be a normalised float clip, got dtype {clips.dtype}")
        if not torch.isfinite(clips).all():
            raise BridgeError(f"{what} contains NaN or inf")
        return clips

    def run_clip(self, clip) -> HybridResult:
        """One normalised clip (T, 3, H, W) through host + Lava."""
        return self.run_clips(clip if clip.dim() == 5 else clip.unsqueeze(0))[0]

    @torch.no_grad()
    def run_clips(self, clips) -> list[HybridResult]:
        """Several normalised clips (B, T, 3, H, W): their segments are pipelined through Lava in one run
        (state resets at every segment, so this equals running them one by one, only faster)."""
        if self._closed:
            raise RuntimeError("this HybridBridge is closed")
        t_start = time.perf_counter()
        clips = self._as_clips(clips).to(self.device, self.host_dtype)
        cfg, T = self.cfg, self.timesteps
        b = clips.shape[0]
        timings: dict[str, Any] = {"host_fuse_s": {k: 0.0 for k in range(1, 5)}}

        # host: ANN on the key frames (or every frame for inputs 'all')
        t0 = time.perf_counter()
        ctx = host_context(self.model, clips, T)
        self._sync()
        timings["host_ann_s"] = time.perf_counter() - t0
        snn_frames = branch_frames(clips, cfg.stride, cfg.inputs, "snn")  # (B, N, T', 3, H, W)
        n_seq = snn_frames.shape[0] * snn_frames.shape[1]
        residual = snn_frames.flatten(0, 1).to("cpu", torch.float64).numpy()  # (B*N, T', 3, H, W)

        was_started = self.spiking.startup_s > 0
        res = self._run_spiking(residual, ctx, timings["host_fuse_s"])
        logits, seg_logits = self._head(res, ctx, b, n_seq * T, timings)
        total = time.perf_counter() - t_start
        timings.update(self._run_timings(res.timings, timings, total, was_started))
        timings.update(clips=b, device=str(self.device))
        traffic = self._traffic(residual, res)
        per = (snn_frames.shape[1]) * T  # logical steps per clip
        return [
            HybridResult(
                logits=logits[i],
                prediction=int(np.argmax(logits[i])),
                segment_logits=seg_logits[i],
                spikes={k: v[i * per : (i + 1) * per] for k, v in res.spikes.items()},
                outputs={k: v[i * per : (i + 1) * per] for k, v in res.outputs.items()},
                host_inputs={k: v[i * per : (i + 1) * per] for k, v in res.host_inputs.items()},
                timings=timings,
                traffic=traffic,
                quantization=res.quantization,
            )
            for i in range(b)
        ]

    def _sync(self) -> None:
        """Wait for the GPU, so that host timings measure the work and not its launch."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _run_spiking(self, residual: np.ndarray, ctx, fuse_s: dict[int, float]) -> SegmentResult:
        """The spiking branch on every segment, the host fusing stage k into stage k+1 as it goes:
        one step at a time for Lava and the numpy emulator, a whole stage at once for the torch one."""
        model = self.model

        def host(stage: int, t: int, out: np.ndarray) -> np.ndarray:
            h0 = time.perf_counter()
            x = torch.from_numpy(out).to(self.device, self.host_dtype).unsqueeze(0)
            y = model.fuse(stage - 1, x, ctx.context(stage - 1, t).unsqueeze(0))[0]
            y = y.to("cpu", torch.float64).numpy()
            fuse_s[stage] += time.perf_counter() - h0
            return y

        def host_batch(stage: int, out: torch.Tensor) -> torch.Tensor:
            h0 = time.perf_counter()
            x = out.to(self.device, self.host_dtype)
            y = model.fuse(stage - 1, x, ctx.contexts(stage - 1, x.shape[0]))
            self._sync()
            fuse_s[stage] += time.perf_counter() - h0
            return y

        fusing = model.fusions is not None
        if self.torch_emulator is None:
            return self.spiking.run_clip(residual, host=host if fusing else None)
        return self._run_torch_emulator(residual, host_batch if fusing else None)

    def _head(self, res: SegmentResult, ctx, b: int, n_steps: int, timings: dict[str, Any]):
        """Host: last fusion, time mean, head -> (logits (B, K), segment logits (B, N, K)) in float64."""
        model, fuse_s = self.model, timings["host_fuse_s"]
        x4 = torch.from_numpy(res.outputs["stage4_out"]).to(self.device, self.host_dtype)  # (B*N*T', C, h, w)
        if model.fusions is not None:
            t0 = time.perf_counter()
            x4 = model.fuse(3, x4, ctx.contexts(3, n_steps))
            self._sync()
            fuse_s[4] += time.perf_counter() - t0
        t0 = time.perf_counter()
        seg_logits = sequence_logits(model, x4, ctx, b)
        logits = seg_logits.mean(1).to("cpu", torch.float64).numpy()
        seg_logits = seg_logits.to("cpu", torch.float64).numpy()
        timings["host_head_s"] = time.perf_counter() - t0
        return logits, seg_logits

    @staticmethod
    def _run_timings(lt: dict[str, float], timings: dict[str, Any], total: float, was_started: bool):
        """Where a call's time went: host, Lava, and the bridge's own overhead between them."""
        host_total = timings["host_ann_s"] + sum(timings["host_fuse_s"].values()) + timings["host_head_s"]
        lava_s = lt["wall_s"] - lt["host_callback_s"]
        return dict(
            total_s=total,
            host_s=host_total,
            lava_s=lava_s,
            # Lava's one-off process start-up (first call) is reported apart, not as overhead
            bridge_overhead_s=total - host_total - lava_s - (0.0 if was_started else lt["startup_s"]),
            host_callback_s=lt["host_callback_s"],
            lava_steps=int(lt["steps"]),
            lava_ms_per_step=1e3 * lava_s / lt["steps"],
            lava_startup_s=lt["startup_s"],
            lava_processes=int(lt["n_processes"]),
        )

    def _run_torch_emulator(self, residual: np.ndarray, host) -> SegmentResult:
        """Backend "torch": the whole batch through torch_emulator, in the runtime's result type."""
        out, timings = run_segments(self.torch_emulator, torch.from_numpy(residual).to(self.device), host)
        lat = self.spiking.port_latency
        res = SegmentResult(out["outputs"], out["spikes"], out["host_inputs"], lat, timings)
        if self.mode == "fixed":
            sat = out["saturation"]
            res.quantization = {
                "saturation": sat, "saturated_total": int(sum(sat.values())), "engine": "torch"
            }
        return res

    def _traffic(self, residual: np.ndarray, res) -> dict[str, Any]:
        """Host <-> chip traffic per logical timestep, counted from the arrays that crossed (see
        ResourceReport.traffic)."""
        n_log = residual.shape[0] * residual.shape[1]
        sent = {"residual_in": residual[0, 0].size}
        sent.update({k: int(np.prod(v.shape[1:])) for k, v in res.host_inputs.items()})
        got = {k: int(np.prod(v.shape[1:])) for k, v in res.outputs.items()}
        assert all(v.shape[0] == n_log for v in res.outputs.values())
        return self.resources.traffic(sent, got)

    def reference(self, clip) -> dict[str, Any]:
        """The PyTorch model on the same clip (golden trace: spikes per LIF layer, logits)."""
        clips = self._as_clips(clip).to(self.device, self.host_dtype)
        out = reference_outputs(self.model, clips)
        return out[0] if clip.dim() == 4 else out

    # ----------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the Lava runtime (idempotent)."""
        self._closed = True
        sp = getattr(self, "spiking", None)
        if sp is not None:
            sp.close()


# re-exported: callers catch these and load the host model through the bridge
__all__ += ["PlanError", "CheckpointError", "load_host_model"]


class DeployedClassifier(torch.nn.Module):
    """A HybridBridge as a classifier: forward(clips (B, T, 3, H, W)) -> logits (B, K) computed by the
    host + Lava (or emulator) partition, so the ordinary evaluation code measures the deployed model."""

    def __init__(self, bridge: HybridBridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.cfg = bridge.cfg

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([r.logits for r in self.bridge.run_clips(clips)]))
