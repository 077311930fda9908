"""ReSpike: ANN on key frames + spiking MS-ResNet on residual frames + cross-attention, and the
paper's ablation variants (ANN-only, SNN-only, no attention, key/res/all inputs) as configs.

Shapes: a clip (B, T, 3, H, W) is cut into N = T/s segments. Each branch sees, per segment, a
short sequence of frames chosen by `cfg.inputs`; segments are folded into the batch (state never
crosses a segment), the SNN runs time-major (T_snn, B*N, C, H, W), and per-segment logits are
averaged over the clip.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from respike_neuro.config import ModelConfig
from respike_neuro.data.clips import segment_clip, split_key_residual
from respike_neuro.models.ann import ResNetStages
from respike_neuro.models.fusion import CrossAttentionFusion
from respike_neuro.models.memory import maybe_checkpoint, recompute_stem
from respike_neuro.models.neuron import make_lif
from respike_neuro.models.snn import MSResNet


def branch_frames(clip: torch.Tensor, stride: int, inputs: str, branch: str) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, N, F, 3, H, W): N sequences of F frames that `branch` sees."""
    if inputs in ("key+res", "res", "key"):
        key, residual = split_key_residual(clip, stride)
        if inputs == "key+res":
            return key.unsqueeze(2) if branch == "ann" else residual
        if inputs == "res":
            return residual
        # key frames: the ANN votes per frame, the SNN sees them as one sequence of T/s steps
        return key.unsqueeze(2) if branch == "ann" else key.unsqueeze(1)
    return segment_clip(clip, stride)


class ReSpike(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        neuron = partial(
            make_lif, cfg.lif_backend, beta=cfg.beta, threshold=cfg.threshold, alpha=cfg.surrogate_alpha
        )
        self.ann = ResNetStages(cfg.ann, weights=cfg.ann_weights) if cfg.has_ann else None
        self.snn = (
            MSResNet(width=cfg.snn_width, blocks=cfg.snn_blocks, neuron=neuron, bn_stats=cfg.snn_bn_stats)
            if cfg.has_snn
            else None
        )
        self.fusions: nn.ModuleList | None = None
        if cfg.architecture == "hybrid" and cfg.attention:
            self.fusions = nn.ModuleList(
                CrossAttentionFusion(c, c_ann, head_dim=cfg.attention_head_dim, pool=p)
                for c, c_ann, p in zip(self.snn.channels, self.ann.channels, cfg.fusion_pool, strict=True)
            )
        self.checkpoint_activations = False  # recompute blocks in backward (see models/memory.py)
        head_in = (self.ann.channels[-1] if self.ann else 0) + (self.snn.channels[-1] if self.snn else 0)
        self.head = nn.Linear(head_in, cfg.num_classes)

    # -- the pieces, also used one by one by the host side of the Lava bridge ---------------------
    def encode_ann(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """(M, 3, H, W) -> four stage feature maps (M, C_k, H_k, W_k)."""
        if self.checkpoint_activations:
            x = maybe_checkpoint(True, self.ann.stem, frames)
        else:
            x = recompute_stem(self.ann.stem, frames)
        features = []
        for stage in self.ann.stages:
            x = maybe_checkpoint(self.checkpoint_activations, stage, x)
            features.append(x)
        return features

    def fuse(self, stage: int, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Stage-`stage` (0-based) fusion of an SNN map (M, C, h, w) with ANN features (M, C_ann, h', w')."""
        return maybe_checkpoint(self.checkpoint_activations, self.fusions[stage], x, context)

    def classify(self, ann_vec: torch.Tensor | None, snn_vec: torch.Tensor | None) -> torch.Tensor:
        """Per-sequence logits from pooled branch features (head input is [ANN x head_ann_scale, SNN])."""
        if ann_vec is not None and self.cfg.head_ann_scale != 1.0:
            ann_vec = ann_vec * self.cfg.head_ann_scale
        return self.head(torch.cat([v for v in (ann_vec, snn_vec) if v is not None], dim=-1))

    def regions(self) -> dict[str, list[nn.Module]]:
        """The modules whose calls end each piece of the network, by name, in forward order per branch.
        The SNN stages run block by block, so a stage ends with any of its blocks; the SNN stem is a
        method, not among them. benchmarks/train_memory.py books memory by these regions, and
        training on a CPU releases freed heap at their edges (allocator.release_heap_at)."""
        regions: dict[str, list[nn.Module]] = {}
        if self.ann is not None:
            regions["ann.stem"] = [self.ann.stem]
            for k, stage in enumerate(self.ann.stages):
                regions[f"ann.stage{k + 1}"] = [stage]
        if self.snn is not None:
            for k, stage in enumerate(self.snn.stages):
                regions[f"snn.stage{k + 1}"] = list(stage)
        if self.fusions is not None:
            for k, fusion in enumerate(self.fusions):
                regions[f"fusion{k + 1}"] = [fusion]
        regions["head"] = [self.head]
        return regions

    # -- whole forward --------------------------------------------------------------------------
    def check_clip(self, clip: torch.Tensor) -> None:
        cfg = self.cfg
        if clip.dim() != 5 or clip.shape[2] != 3:
            raise ValueError(f"clip must be (B, T, 3, H, W), got {tuple(clip.shape)}")
        if clip.shape[1] % cfg.stride != 0:
            raise ValueError(f"clip length T={clip.shape[1]} is not divisible by stride s={cfg.stride}")
        if clip.shape[-1] % 32 or clip.shape[-2] % 32:
            raise ValueError(f"clip height and width must be multiples of 32, got {tuple(clip.shape[-2:])}")

    def segment_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) normalised clip -> per-sequence logits (B, N, K)."""
        self.check_clip(clip)
        cfg = self.cfg
        b = clip.shape[0]
        ann_feats = ann_vec = snn_vec = None
        f = 1
        if self.ann is not None:
            frames = branch_frames(clip, cfg.stride, cfg.inputs, "ann")  # (B, N, F, 3, H, W)
            n, f = frames.shape[1:3]
            ann_feats = self.encode_ann(frames.flatten(0, 2))
            ann_vec = ann_feats[-1].mean((-2, -1)).view(b * n, f, -1)
        if self.snn is not None:
            frames = branch_frames(clip, cfg.stride, cfg.inputs, "snn")  # (B, N, T, 3, H, W)
            n, t = frames.shape[1:3]
            x, spikes = self.snn.forward_stem_spikes(frames.flatten(0, 1).transpose(0, 1))
            for k, stage in enumerate(self.snn.stages):
                for block in stage:
                    x, spikes = maybe_checkpoint(self.checkpoint_activations, block, x, spikes), None
                if self.fusions is not None:
                    context = self._context_per_step(ann_feats[k], f)
                    x = self.fuse(k, x.flatten(0, 1), context).view_as(x)
            snn_vec = x.mean(0).mean((-2, -1))  # (B*N, C)
        if self.ann is not None and snn_vec is None:
            return self.classify(ann_vec, None).view(b, -1, cfg.num_classes)  # per-frame votes
        if ann_vec is not None:
            ann_vec = ann_vec.mean(1)
        return self.classify(ann_vec, snn_vec).view(b, -1, cfg.num_classes)

    @staticmethod
    def _context_per_step(features: torch.Tensor, frames: int) -> torch.Tensor:
        """ANN features (M*F, C, h, w) as the fusion's context for the time-folded SNN map (T*M, ...).

        F = 1: the segment's key frame serves every timestep, (M, C, h, w) as they are (the fusion
        attends with all T steps of a segment at once); F = T ("all"): frame t serves step t,
        laid out time-major (T*M, C, h, w).
        """
        if frames == 1:
            return features
        per_seq = features.view(-1, frames, *features.shape[1:]).transpose(0, 1)  # (F, M, C, h, w)
        return per_seq.reshape(-1, *features.shape[1:])

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.segment_logits(clip).mean(1)


def build_model(cfg: ModelConfig) -> ReSpike:
    return ReSpike(cfg)
