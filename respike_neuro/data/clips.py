"""Clip normalisation and the key/residual split of ReSpike (paper Sec. 4.1).

A clip of T frames is cut into T/s segments of stride s. The first frame of each segment is the
key frame (ANN input); the s-1 residuals are every other frame minus that key frame (SNN input,
one per timestep). Residuals are taken AFTER per-channel normalisation, as the authors do, so a
residual equals (f_j - f_0) / std_c and a static scene gives exactly zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_clip(
    clip: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> torch.Tensor:
    """Normalise a (..., C, H, W) clip in [0, 1] per channel, the same way for every frame."""
    if clip.dim() < 3 or clip.shape[-3] != len(mean):
        raise ValueError(f"clip must have shape (..., {len(mean)}, H, W), got {tuple(clip.shape)}")
    shape = (len(mean), 1, 1)
    m = torch.tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    s = torch.tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    return (clip - m) / s


class KeyResidual(NamedTuple):
    """key: (B, N, C, H, W) key frames; residual: (B, N, s-1, C, H, W); N = T / s segments."""

    key: torch.Tensor
    residual: torch.Tensor


def segment_clip(clip: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T/s, s, C, H, W); T must be a multiple of s."""
    if clip.dim() != 5:
        raise ValueError(f"clip must have shape (B, T, C, H, W), got {tuple(clip.shape)}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    b, t = clip.shape[:2]
    if t % stride != 0:
        raise ValueError(f"clip length T={t} is not divisible by stride s={stride}")
    return clip.reshape(b, t // stride, stride, *clip.shape[2:])


def split_key_residual(clip: torch.Tensor, stride: int) -> KeyResidual:
    """Split a normalised (B, T, C, H, W) clip into key frames and key-relative residuals."""
    segments = segment_clip(clip, stride)
    key = segments[:, :, 0]
    residual = segments[:, :, 1:] - key.unsqueeze(2)
    return KeyResidual(key=key, residual=residual)
