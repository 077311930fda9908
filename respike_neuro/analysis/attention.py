"""Cross-attention maps (the paper's Fig. 4): where each SNN query token looks in the ANN's key frame.

`cross_attention_maps` captures the attention weights of one fusion layer while the model classifies
(torch, a forward hook); `plot_attention` draws them over the key frames, with the conventions of
plots.py (plain data in, a matplotlib Figure out, PNG when given a path).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from respike_neuro.analysis.plots import save


def cross_attention_maps(model: Any, clips: Any, stage: int = -1) -> dict[str, Any]:
    """Cross-attention weights of fusion `stage` while `model` classifies `clips` (B, T, 3, H, W).

    A forward hook on `fusions[stage].block.cross_attn` captures the exact (normalised) SNN query
    tokens and ANN context tokens the model attends with, and `attention_map` turns them into the
    softmax weights. Returns {"maps": (B, N, T', L_q, L_k) averaged over heads (the paper's Fig. 4),
    "heads": per-head maps (B, N, T', heads, L_q, L_k), "query_grid": (h, w), "context_grid": (h', w'),
    "logits": (B, K)}, N segments of T' residual timesteps; all numpy.
    """
    import torch

    fusions = getattr(model, "fusions", None)
    if fusions is None:
        raise ValueError("the model has no cross-attention fusion (hybrid with attention=True needed)")
    if not -len(fusions) <= stage < len(fusions):
        raise ValueError(f"stage {stage} out of range for {len(fusions)} fusion layers")
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5:
        shape = getattr(clips, "shape", type(clips))
        raise ValueError(f"clips must be a tensor (B, T, 3, H, W), got {shape}")
    fusion = fusions[stage]
    attn = fusion.block.cross_attn
    grids: dict[str, tuple[int, int]] = {}
    captured: list[torch.Tensor] = []

    def on_fusion(module, args, kwargs=None):
        x, context = args[:2]
        pooled, _ = module.tokens(x, context)
        grids["query"] = tuple(pooled.shape[-2:])
        ctx = context if module.pool <= 1 else torch.nn.functional.avg_pool2d(context, module.pool)
        grids["context"] = tuple(ctx.shape[-2:])

    def on_attn(module, args):
        captured.append(module.attention_map(args[0], args[1]).detach())

    handles = [fusion.register_forward_pre_hook(on_fusion), attn.register_forward_pre_hook(on_attn)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(clips)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if len(captured) != 1:
        raise RuntimeError(f"expected one cross-attention call, saw {len(captured)}")
    heads = captured[0]  # (T' * B * N, heads, Lq, Lk), time-major as the model folds the SNN map
    cfg = model.cfg
    b, n = clips.shape[0], cfg.segments
    t = heads.shape[0] // (b * n)
    heads = heads.view(t, b, n, *heads.shape[1:]).permute(1, 2, 0, 3, 4, 5).contiguous()
    return {
        "maps": heads.mean(3).numpy(),
        "heads": heads.numpy(),
        "query_grid": grids["query"],
        "context_grid": grids["context"],
        "logits": logits.numpy(),
    }


def upsample_map(weights: np.ndarray, grid: tuple[int, int], size: int) -> np.ndarray:
    """Attention over a (h, w) token grid -> (size, size) image, bilinear (for display on the frame)."""
    from scipy.ndimage import zoom

    w = np.asarray(weights, dtype=float).reshape(grid)
    return zoom(w, (size / grid[0], size / grid[1]), order=1, mode="nearest", grid_mode=True)


def plot_attention(
    frames: np.ndarray,
    maps: np.ndarray,
    *,
    query_grid: tuple[int, int],
    context_grid: tuple[int, int],
    queries: Sequence[int] | None = None,
    titles: Sequence[str] | None = None,
    title: str = "cross-attention of SNN query tokens over ANN context tokens",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Rows = clips: the key frame with the chosen query tokens marked, then for each query its
    attention over the context tokens, bilinearly upsampled onto the key frame.

    frames: (B, 3, H, W) key frames in [0, 1]; maps: (B, L_q, L_k) (already averaged over heads and
    timesteps); queries: token indices in the query grid (default: the centre and the corners).
    """
    frames = np.asarray(frames, dtype=float)
    maps = np.asarray(maps, dtype=float)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (B, 3, H, W) key frames, got shape {frames.shape}")
    lq, lk = math.prod(query_grid), math.prod(context_grid)
    if maps.shape != (frames.shape[0], lq, lk):
        raise ValueError(
            f"maps must be (B, {lq}, {lk}) for grids {query_grid}/{context_grid}, got {maps.shape}"
        )
    if queries is None:
        h, w = query_grid
        queries = sorted({(h // 2) * w + w // 2, 0, w - 1, (h - 1) * w + w - 1})
    queries = list(queries)
    if not queries or any(not 0 <= q < lq for q in queries):
        raise ValueError(f"queries must be token indices in [0, {lq}), got {queries}")
    b, size = frames.shape[0], frames.shape[-1]
    fig = Figure(figsize=(1.9 * (len(queries) + 1), 2.0 * b + 0.5))
    axes = fig.subplots(b, len(queries) + 1, squeeze=False)
    cell = (size / query_grid[0], size / query_grid[1])
    colours = ["tab:red", "tab:cyan", "tab:green", "tab:orange", "tab:purple", "tab:pink"]
    for i in range(b):
        img = frames[i].transpose(1, 2, 0).clip(0, 1)
        ax = axes[i, 0]
        ax.imshow(img)
        for j, q in enumerate(queries):
            r, c = divmod(q, query_grid[1])
            ax.add_patch(_rect(c * cell[1], r * cell[0], cell[1], cell[0], colours[j % len(colours)]))
        ax.set_title(titles[i] if titles else f"clip {i}: key frame", fontsize=8)
        for j, q in enumerate(queries):
            ax = axes[i, j + 1]
            ax.imshow(img)
            heat = upsample_map(maps[i, q], context_grid, size)
            ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=max(heat.max(), 1e-12))
            r, c = divmod(q, query_grid[1])
            ax.add_patch(_rect(c * cell[1], r * cell[0], cell[1], cell[0], colours[j % len(colours)]))
            ax.set_title(f"query {q} (row {r}, col {c}); max {maps[i, q].max():.2f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def _rect(x: float, y: float, w: float, h: float, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=colour, lw=1.6)
