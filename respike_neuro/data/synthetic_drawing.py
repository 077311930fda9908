"""Drawing the built-in synthetic clips: static scenes, clutter, and the movers (actor, distractors).

Pure numpy on a pixel grid, every random choice drawn from the Generator passed in, in a fixed
order: SyntheticActions.sample (synthetic.py) calls these in sequence, and the order of the draws
is what makes an item the same clip on every run. Sizes and speeds are fractions of the frame side.
"""

from __future__ import annotations

import math

import numpy as np

# Sizes and speeds are fractions of the frame side R (speeds per frame).
ACTOR_RADIUS = (0.09, 0.12)
DISTRACTOR_RADIUS = (0.035, 0.06)  # disjoint from the actor's: "the actor" is the largest mover
ACTOR_SPEED = (0.03, 0.05)  # 1.9-3.2 px/frame at 64x64: 6-10 px across a segment of s=4
DISTRACTOR_SPEED = (0.01, 0.04)
ORBIT_RADIUS = (0.15, 0.25)
MARGIN = 0.02
SCENE_LEVELS = (0.25, 0.72)  # scene colours; + offsets of at most ~0.28 stay inside [0, 1]
OFFSET_MAX = 0.28
OFFSET_MIN_NORM = 0.25


# ----------------------------------------------------------------------------------------------
# Scenes: static layouts; every scene draws its two colours from the same distribution, so the
# layout (not the colour) is what identifies it.


def _scene_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Base and pattern colours, (3,) each, in SCENE_LEVELS, at least 0.35 apart (L2)."""
    base = rng.uniform(*SCENE_LEVELS, size=3)
    while True:
        pattern = rng.uniform(*SCENE_LEVELS, size=3)
        if np.linalg.norm(pattern - base) >= 0.35:
            return base.astype(np.float32), pattern.astype(np.float32)


def _band(coord: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Anti-aliased 1-D indicator of |coord - centre| <= half_width (soft 1-pixel edge)."""
    return np.clip(half_width - np.abs(coord - centre) + 0.5, 0.0, 1.0)


def render_scene(rng: np.random.Generator, name: str, grid: np.ndarray) -> np.ndarray:
    """(3, R, R) float32 static scene: pattern weight w in [0, 1], scene = base + w (pattern - base)."""
    r = grid.size
    base, pattern = _scene_colours(rng)
    x, y = grid[None, :], grid[:, None]
    line = max(1.0, 0.02 * r)  # half width of painted lines
    if name == "pool":  # horizontal lane ropes
        n = int(rng.integers(4, 7))
        gap = r / n
        y0 = rng.uniform(0.3, 0.7) * gap
        w1 = np.max([_band(grid, y0 + k * gap, line) for k in range(n)], axis=0)
        w = np.broadcast_to(w1[:, None], (r, r))
    elif name == "court":  # inset outline, centre line, centre circle
        inset = rng.uniform(0.08, 0.16) * r
        lo, hi = inset, r - inset
        inside_x = ((x >= lo - line) & (x <= hi + line)).astype(np.float32)
        inside_y = ((y >= lo - line) & (y <= hi + line)).astype(np.float32)
        vert = np.maximum(_band(x, lo, line), _band(x, hi, line)) * inside_y
        horiz = np.maximum(_band(y, lo, line), _band(y, hi, line)) * inside_x
        centre_line = _band(x, r / 2, line) * inside_y
        ring = _band(np.hypot(x - r / 2, y - r / 2), rng.uniform(0.12, 0.2) * r, line)
        w = np.maximum.reduce([vert, horiz, centre_line, ring])
    elif name == "field":  # vertical mowing stripes
        n = int(rng.integers(4, 8))
        phase = rng.uniform(0, 2 * math.pi)
        w1 = 0.5 + 0.5 * np.tanh(3.0 * np.sin(math.pi * n * grid / r + phase))
        w = np.broadcast_to(w1[None, :], (r, r))
    elif name == "track":  # an oval running-track band around the centre
        ax, ay = rng.uniform(0.3, 0.4) * r, rng.uniform(0.2, 0.3) * r
        rho = np.hypot((x - r / 2) / ax, (y - r / 2) / ay)
        w = _band(rho * min(ax, ay), min(ax, ay), 0.06 * r)
    elif name == "tiles":  # checkerboard floor
        n = int(rng.integers(3, 6))
        ox, oy = rng.uniform(0, r / n, size=2)
        w = (((x + ox) // (r / n) + (y + oy) // (r / n)) % 2).astype(np.float32)
    else:  # guarded by _check_names
        raise ValueError(f"unknown scene {name!r}")
    w = np.asarray(w, dtype=np.float32)
    scene = base[:, None, None] + w[None] * (pattern - base)[:, None, None]
    scene += rng.normal(0.0, 0.015, size=(1, r, r)).astype(np.float32)  # static grain, cancels too
    return scene.astype(np.float32)


def _shape_distance(kind: int, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Distance whose level sets are the shape: 0 disc (L2), 1 square (Linf), 2 diamond (L1)."""
    if kind == 0:
        return np.sqrt(dx * dx + dy * dy)
    if kind == 1:
        return np.maximum(np.abs(dx), np.abs(dy))
    return (np.abs(dx) + np.abs(dy)) * np.float32(0.75)


def stamp_static(rng: np.random.Generator, scene: np.ndarray, grid: np.ndarray) -> None:
    """Paint one opaque static clutter object into the scene (class-agnostic appearance noise)."""
    r = grid.size
    cx, cy = rng.uniform(0, r, size=2)
    radius = r * rng.uniform(0.04, 0.1)
    mask = np.clip(radius - _shape_distance(int(rng.integers(3)), grid[None, :] - cx,
                                            grid[:, None] - cy) + 0.5, 0.0, 1.0)
    colour = rng.uniform(*SCENE_LEVELS, size=3).astype(np.float32)
    scene += mask[None] * (colour[:, None, None] - scene)


# ----------------------------------------------------------------------------------------------
# Movers: translucent objects that add a colour offset where their (anti-aliased) mask is.


def colour_offset(rng: np.random.Generator) -> np.ndarray:
    """A random signed RGB offset with entries in [-OFFSET_MAX, OFFSET_MAX] and norm >= OFFSET_MIN_NORM."""
    a = rng.uniform(-OFFSET_MAX, OFFSET_MAX, size=3)
    norm = np.linalg.norm(a)
    if norm < OFFSET_MIN_NORM:
        a = a * (OFFSET_MIN_NORM / max(norm, 1e-6))
    return a.astype(np.float32)


def actor_path(
    rng: np.random.Generator, motion: str, t: int, r: int, radius: float, stride: int
) -> np.ndarray:
    """(T, 2) actor centres (x, y), in pixels.

    A translation is x_t = c + sign * v * (t - t_key), centred on the mean key-frame time t_key
    (key frames t_k = 0, s, 2s, ...). The offsets t_k - t_key are symmetric, and c is drawn from
    the range that keeps BOTH directions in frame, so the bag {x_{t_k}} of a left-mover has exactly
    the distribution of a right-mover's: averaged per-key-frame predictions cannot separate them.
    The other coordinate is drawn from the same marginal as a key-frame position on the path, so a
    single key frame hides the axis too. Orbits start at a uniform angle: cw and ccw bags are equal.
    """
    lo, hi = radius + MARGIN * r, r - radius - MARGIN * r
    span = hi - lo
    speed = r * rng.uniform(*ACTOR_SPEED)
    if motion in ("clockwise", "counterclockwise"):
        orbit = min(r * rng.uniform(*ORBIT_RADIUS), span / 2)
        cx, cy = rng.uniform(lo + orbit, hi - orbit, size=2)
        omega = speed / orbit * (1.0 if motion == "clockwise" else -1.0)  # y points down: +angle = clockwise
        angle = rng.uniform(0, 2 * math.pi) + omega * np.arange(t)
        return np.stack([cx + orbit * np.cos(angle), cy + orbit * np.sin(angle)], axis=1)
    keys = np.arange(0, t, stride, dtype=np.float64)
    steps = np.arange(t, dtype=np.float64) - keys.mean()
    extent = max(-steps[0], steps[-1])  # furthest frame from t_key, either direction
    if extent > 0:
        speed = min(speed, 0.95 * span / (2 * extent))  # long clips: slow down so the path stays in frame
    sign = 1.0 if motion in ("right", "down") else -1.0
    along = rng.uniform(lo + speed * extent, hi - speed * extent) + sign * speed * steps
    key_offset = speed * (keys[rng.integers(keys.size)] - keys.mean())
    across = rng.uniform(lo + speed * extent, hi - speed * extent) + key_offset
    if motion in ("left", "right"):
        return np.stack([along, np.full(t, across)], axis=1)
    return np.stack([np.full(t, across), along], axis=1)


def distractor_path(rng: np.random.Generator, t: int, r: int) -> np.ndarray:
    """(T, 2) straight path in a uniformly random direction, starting anywhere in the frame."""
    angle = rng.uniform(0, 2 * math.pi)
    speed = r * rng.uniform(*DISTRACTOR_SPEED)
    start = rng.uniform(0, r, size=2)
    steps = np.arange(t, dtype=np.float64)[:, None]
    return start + speed * steps * np.array([math.cos(angle), math.sin(angle)])


def add_mover(clip: np.ndarray, moving: np.ndarray, grid: np.ndarray, xy: np.ndarray, radius: float,
               kind: int, offset: np.ndarray) -> None:
    """Add offset * mask_t to every frame t, all frames at once inside the path's bounding box."""
    r = grid.size
    reach = radius * 1.5 + 1.0  # covers every shape's soft edge (diamond reaches radius / 0.75 + 0.5)
    x0, x1 = max(0, int(xy[:, 0].min() - reach)), min(r, int(xy[:, 0].max() + reach) + 1)
    y0, y1 = max(0, int(xy[:, 1].min() - reach)), min(r, int(xy[:, 1].max() + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    centres = xy.astype(np.float32)
    dx = grid[None, None, x0:x1] - centres[:, 0, None, None]
    dy = grid[None, y0:y1, None] - centres[:, 1, None, None]
    mask = np.float32(radius + 0.5) - _shape_distance(int(kind), dx, dy)
    np.clip(mask, 0.0, 1.0, out=mask)
    clip[:, :, y0:y1, x0:x1] += mask[:, None] * offset[None, :, None, None]
    moving[:, y0:y1, x0:x1] |= mask > 0
