"""Clip sampling: which frame indices of a video make one clip, in training and in evaluation.

Frame indices are positions in presentation order at the native frame rate (frame k is shown
at t = k / fps). Clip sampling (paper protocol, Sec. 5 and the authors' code):

* train, "consecutive": T consecutive frames (every `step`-th frame) from a uniformly random
  start s in [0, n - L], L = (T - 1) * step + 1 the clip's span.
* train, "sparse" (TSN): the video is cut into T equal segments of n / T frames; one random frame
  per segment.
* eval: N clips per video. Consecutive clip c of N starts at round((n - L) * (c + 1/2) / N)
  (N = 1 is the centre clip); sparse clip c takes the frame at fraction (c + 1/2) / N of every
  segment. No randomness: the same item always gives the same clip.

Short videos (n < L, or n < T for sparse): ONE rule everywhere, "hold the last frame": the clip
takes frames 0, step, 2*step, ... and every index past the end is clamped to n - 1, so the clip
ends in a freeze (zero residuals, as if the scene stopped). Such videos are counted (`videos_short`).
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLINGS = ("consecutive", "sparse")


def clip_span(frames: int, step: int = 1) -> int:
    """Frames a consecutive clip covers: L = (T - 1) * step + 1."""
    return (frames - 1) * step + 1


def frames_needed(frames: int, step: int, sampling: str) -> int:
    """Shortest video that needs no hold-last padding."""
    return frames if sampling == "sparse" else clip_span(frames, step)


def _consecutive(num_frames: int, frames: int, start: int, step: int) -> np.ndarray:
    return np.minimum(start + step * np.arange(frames), num_frames - 1)


def _check_sampling(num_frames: int, frames: int, step: int, sampling: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frames < 1 or step < 1:
        raise ValueError(f"frames and step must be >= 1, got frames={frames}, step={step}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")


def train_indices(num_frames: int, frames: int, *, step: int = 1, sampling: str = "consecutive",
                  generator: torch.Generator | None = None) -> np.ndarray:
    """Frame indices of one random training clip (torch's RNG, seeded per DataLoader worker)."""
    _check_sampling(num_frames, frames, step, sampling)
    if sampling == "sparse" and num_frames >= frames:
        seg = num_frames / frames
        lo = np.floor(np.arange(frames) * seg).astype(np.int64)
        hi = np.maximum(np.floor((np.arange(frames) + 1) * seg).astype(np.int64), lo + 1)
        u = torch.rand(frames, generator=generator, dtype=torch.float64).numpy()
        return np.minimum(lo + np.floor(u * (hi - lo)).astype(np.int64), num_frames - 1)
    room = num_frames - clip_span(frames, step)
    start = int(torch.randint(room + 1, (1,), generator=generator)) if room > 0 else 0
    return _consecutive(num_frames, frames, start, step)


def eval_indices(num_frames: int, frames: int, clip: int, num_clips: int, *, step: int = 1,
                 sampling: str = "consecutive") -> np.ndarray:
    """Frame indices of evaluation clip `clip` of `num_clips` uniformly spaced ones."""
    _check_sampling(num_frames, frames, step, sampling)
    if not 0 <= clip < num_clips:
        raise ValueError(f"clip must be in [0, {num_clips}), got {clip}")
    frac = (clip + 0.5) / num_clips
    if sampling == "sparse" and num_frames >= frames:
        seg = num_frames / frames
        return np.minimum(np.floor((np.arange(frames) + frac) * seg).astype(np.int64), num_frames - 1)
    room = num_frames - clip_span(frames, step)
    start = int(np.floor(room * frac + 0.5)) if room > 0 else 0
    return _consecutive(num_frames, frames, start, step)
