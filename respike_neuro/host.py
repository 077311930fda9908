"""The host half of a deployed model: the checkpoint's ReSpike in torch, and what it feeds the spiking branch.

The bridge (bridge.py) runs the spiking branch in Lava or an emulator and calls back into the host
every timestep; quantisation-aware fine-tuning (qat.py) runs the same host half around the torch
emulator. Both need the same pieces, so they live here: the model from a checkpoint, the ports the
exporter gives it, the ANN's key-frame context per logical step, and the classification head.
Imports torch: a module that also runs Lava imports Lava first (see bridge.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from respike_neuro.checkpoint import CheckpointError, check_state_dict, load_checkpoint
from respike_neuro.config import ModelConfig
from respike_neuro.models.hybrid import ReSpike, branch_frames, build_model

__all__ = [
    "HostContext",
    "calibration_inputs",
    "expected_ports",
    "host_context",
    "load_host_model",
    "reference_outputs",
    "sequence_logits",
]


def load_host_model(path: str | os.PathLike) -> tuple[ReSpike, dict]:
    """Checkpoint -> (model in eval mode on CPU, checkpoint dict); never downloads pretrained weights."""
    state = load_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(dict(state["model_config"]), source=f"checkpoint {path}")
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: invalid model_config: {err}") from None
    model = build_model(cfg.replace(ann_weights=None))  # the checkpoint carries every weight
    model.cfg = cfg
    check_state_dict(model, state["model"], source=f"checkpoint {path}")
    model.load_state_dict(state["model"])
    return model.eval(), state


def calibration_inputs(model: ReSpike, clips: torch.Tensor, ports: list[str]) -> dict[str, np.ndarray]:
    """What each Lava input port carries for `clips` (B, T, 3, H, W) per the PyTorch model (golden trace),
    stacked over segments: {port: (B*N*T', C, H, W)}. Used to calibrate fixed-point ranges on real data."""
    from respike_neuro.export.trace import record_snn_io

    trace = record_snn_io(model, clips)
    return {p: np.concatenate([seg[p] for seg in trace["segments"]]).astype(np.float64) for p in ports}


def expected_ports(model: ReSpike) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Input/output port shapes the exporter gives this model (computed from the architecture)."""
    cfg = model.cfg
    res = cfg.resolution
    hybrid_ports = model.fusions is not None
    inputs = {"residual_in": [3, res, res]}
    outputs: dict[str, list[int]] = {}
    ch = list(model.snn.channels)
    for i, c in enumerate(ch, start=1):  # stem and every stage halve the grid: stage i is res / 2**(i+1)
        if hybrid_ports and i > 1:
            inputs[f"stage{i}_in"] = [ch[i - 2], res >> i, res >> i]
        if hybrid_ports or i == len(ch):
            outputs[f"stage{i}_out"] = [c, res >> (i + 1), res >> (i + 1)]
    return inputs, outputs


@dataclass
class HostContext:
    """The host's ANN side of one batch: key-frame features, looked up per logical Lava step."""

    feats: list[torch.Tensor] | None  # per ANN stage: (B*N*F, C, h, w)
    ann_vec: torch.Tensor | None  # pooled last stage per sequence: (B*N, C)
    frames: int  # F: ANN frames per sequence (1 for key frames)
    timesteps: int  # T': SNN steps per sequence

    def context(self, stage: int, t: int | torch.Tensor) -> torch.Tensor:
        """ANN features of `stage` for logical step(s) t = sequence * T' + step (an int or index tensor)."""
        f, T = self.frames, self.timesteps
        return self.feats[stage][(t // T) * f + (t % T if f > 1 else 0)]

    def contexts(self, stage: int, n: int) -> torch.Tensor:
        """The same for logical steps 0..n-1 (sequence-major, the bridge's order)."""
        return self.context(stage, torch.arange(n, device=self.feats[stage].device))


def host_context(model: ReSpike, clips: torch.Tensor, timesteps: int) -> HostContext:
    """Run the ANN on the key frames of `clips` (B, T, 3, H, W) (or every frame, inputs 'all')."""
    cfg = model.cfg
    if model.ann is None:
        return HostContext(None, None, 1, timesteps)
    frames = branch_frames(clips, cfg.stride, cfg.inputs, "ann")  # (B, N, F, 3, H, W)
    f = frames.shape[2]
    feats = model.encode_ann(frames.flatten(0, 2))
    ann_vec = feats[-1].mean((-2, -1)).view(-1, f, feats[-1].shape[1]).mean(1)
    return HostContext(feats, ann_vec, f, timesteps)


def sequence_logits(model: ReSpike, x4: torch.Tensor, ctx: HostContext, batch: int) -> torch.Tensor:
    """Head on the (fused) stage-4 stream x4 (B*N*T', C, h, w), sequence-major: logits (B, N, K)."""
    snn_vec = x4.view(-1, ctx.timesteps, *x4.shape[1:]).mean(1).mean((-2, -1))
    return model.classify(ctx.ann_vec, snn_vec).view(batch, -1, model.cfg.num_classes)


def reference_outputs(model: ReSpike, clips: torch.Tensor) -> list[dict[str, Any]]:
    """The PyTorch model on `clips` (B, T, 3, H, W), per clip: logits, prediction, spikes per LIF layer
    and the stage outputs, over all segments (golden trace, export/trace.py)."""
    from respike_neuro.export.trace import record_snn_io

    tr = record_snn_io(model, clips)
    lif = [k for k in tr["segments"][0] if k.startswith("layer")]
    per = len(tr["segments"]) // clips.shape[0]
    out = []
    for i in range(clips.shape[0]):
        segs = tr["segments"][i * per : (i + 1) * per]
        logits = tr["segment_logits"][i].mean(0).astype(np.float64)
        out.append(
            {
                "logits": logits,
                "prediction": int(np.argmax(logits)),
                "spikes": {k: np.concatenate([s[k] for s in segs]) > 0 for k in lif},
                "outputs": {
                    k: np.concatenate([s[k] for s in segs]) for k in segs[0] if k.endswith("_out")
                },
            }
        )
    return out
