"""Golden trace of the spiking branch: what every NIR port and LIF node carries, from PyTorch itself.

The trace is recorded with forward hooks on the real model while `segment_logits` runs, so it is
the model's own arithmetic (fusion included), not a re-implementation of its forward. Keys are
the NIR node names of docs/nir-contract.md, so a consumer of the exported graph compares node for
node: `residual_in`, `stage{k}_out`, `stage{k}_in` (k >= 2, hybrid with attention only: the fused
features the host sends back) and `layer{i}.{j}.lif1` / `.lif2` (spikes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["record_snn_io"]


def record_snn_io(model: nn.Module, clip: torch.Tensor) -> dict[str, Any]:
    """Run `model` (eval mode) on `clip` and return the spiking branch's I/O per segment.

    clip: normalised (T, 3, H, W) or (B, T, 3, H, W). Returns
      {"segments": [ {key: array (T_snn, *shape)} per sequence ], "segment_logits": (B, N, K),
       "timesteps": T_snn}
    where the sequences are ordered as the model folds them (sample-major, then segment) and each
    dict holds residual_in (T_snn, 3, H, W), every stage output, every fused stage input, and the
    spikes of every LIF layer, as numpy arrays in the model's dtype.
    """
    snn = getattr(model, "snn", None)
    if snn is None:
        raise ValueError("the model has no spiking branch (architecture 'ann'): nothing to trace")
    if model.training:
        raise ValueError(
            "record_snn_io needs the model in eval mode (BN running statistics): call model.eval()"
        )
    if not isinstance(clip, torch.Tensor):
        raise TypeError(f"clip must be a torch.Tensor, got {type(clip).__name__}")
    if clip.dim() == 4:
        clip = clip.unsqueeze(0)
    hybrid_ports = getattr(model, "fusions", None) is not None
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str, value: torch.Tensor) -> None:
        if key in seen:
            raise RuntimeError(f"{key} was recorded twice; the model ran the spiking branch more than once")
        seen[key] = value.detach().clone()

    def on_output(key: str):
        return lambda mod, args, out: keep(key, out)

    def on_stem_input(mod, args):
        keep("residual_in", args[0])

    handles = [snn.stem.register_forward_pre_hook(on_stem_input)]
    for i, stage in enumerate(snn.stages, start=1):
        for j, block in enumerate(stage):
            handles.append(block.lif1.register_forward_hook(on_output(f"layer{i}.{j}.lif1")))
            handles.append(block.lif2.register_forward_hook(on_output(f"layer{i}.{j}.lif2")))
        handles.append(stage[-1].register_forward_hook(on_output(f"stage{i}_out")))
        if hybrid_ports and i > 1:
            handles.append(
                stage[0].register_forward_pre_hook(lambda mod, args, key=f"stage{i}_in": keep(key, args[0]))
            )
    try:
        with torch.no_grad():
            logits = model.segment_logits(clip)
    finally:
        for h in handles:
            h.remove()

    t_snn = seen["layer1.0.lif1"].shape[0]
    stem_in = seen.pop("residual_in")  # time folded into batch: (T*M, 3, H, W)
    seen["residual_in"] = stem_in.reshape(t_snn, -1, *stem_in.shape[1:])
    m = seen["residual_in"].shape[1]
    segments = [{k: v[:, s].cpu().numpy() for k, v in seen.items()} for s in range(m)]
    return {"segments": segments, "segment_logits": logits.cpu().numpy(), "timesteps": t_snn}


def stack_segments(trace: dict[str, Any], key: str) -> np.ndarray:
    """One key over all segments: (M, T_snn, *shape)."""
    return np.stack([seg[key] for seg in trace["segments"]])
