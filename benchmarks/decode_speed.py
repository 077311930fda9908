"""Decoded training clips per second, by DataLoader workers, with and without the frame cache.

    python benchmarks/decode_speed.py                       # 320x240 mpeg4 at 25 fps, T=16, 112 px
    python benchmarks/decode_speed.py --codec libx264 --workers 0 2 --mode eval

Generates its own videos (smooth moving shapes on a textured background, so the codec works
about as hard as on real footage), then times the full item path of VideoClipDataset: decode,
RandomResizedCrop + flip (or resize + centre crop), normalisation, collation. The first batch
(worker start-up) is excluded from the rate. The cache is built before timing; its build time
and disk size are printed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from respike_neuro.data.frame_cache import FrameCache
from respike_neuro.data.video import VideoClipDataset, VideoRecord


def synth_video(path: Path, frames: int, width: int, height: int, fps: int, codec: str, seed: int,
                bit_rate: int) -> None:
    """Textured background, three moving discs and mild sensor noise per frame, coded at `bit_rate`
    (UCF-101's xvid files average about 0.5 Mbit/s), so the decoder works as on real footage."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([xx / width, yy / height, 0.5 + 0.25 * np.sin(xx / 7 + yy / 11)], -1) * 200
    bg += rng.normal(0, 6, bg.shape)
    movers = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-3, 3),
               rng.uniform(12, 30), rng.uniform(0, 255, 3)) for _ in range(3)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        for t in range(frames):
            img = bg + 3 * rng.standard_normal(bg.shape, dtype=np.float32)
            for x0, y0, vx, vy, r, colour in movers:
                cx, cy = (x0 + vx * t) % width, (y0 + vy * t) % height
                img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = colour
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def time_loader(ds: VideoClipDataset, workers: int, batch: int, clips: int, seed: int) -> tuple[float, float]:
    """(clips/s after the first batch, seconds to the first batch)."""
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, replacement=True, num_samples=clips, generator=g)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in it)
    t2 = time.perf_counter()
    return (n / (t2 - t1) if n else float("nan")), t1 - t0


def machine() -> dict:
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "pyav": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
    }


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=positive, default=8, help="generated videos (default 8)")
    p.add_argument("--video-frames", type=positive, default=150, help="frames per video (default 150: 6 s)")
    p.add_argument("--width", type=positive, default=320)
    p.add_argument("--height", type=positive, default=240)
    p.add_argument("--fps", type=positive, default=25)
    p.add_argument("--codec", default="mpeg4", help="mpeg4 (.avi, like UCF-101) or libx264 (.mp4)")
    p.add_argument("--bit-rate", type=positive, default=600_000, help="bits/s (default 600k)")
    p.add_argument("--frames", type=positive, default=16, help="clip length T")
    p.add_argument("--resolution", type=positive, default=112)
    p.add_argument("--mode", choices=("train", "eval"), default="train")
    p.add_argument("--batch", type=positive, default=8)
    p.add_argument("--clips", type=positive, default=96, help="clips timed per configuration")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=positive, default=1, help="FFmpeg decoder threads per video")
    p.add_argument("--cache-short-side", type=int, default=128, help="0: cache at native size")
    p.add_argument("--no-cache", action="store_true", help="skip the cached runs")
    p.add_argument("--torch-threads", type=positive, default=None,
                   help="torch intra-op threads in the main process (workers always use 1)")
    p.add_argument("--dir", help="where to write videos and cache (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if any(w < 0 for w in args.workers):
        print("error: --workers must be >= 0", file=sys.stderr)
        return 1
    ext = ".mp4" if args.codec in ("libx264", "h264") else ".avi"
    try:
        av.codec.Codec(args.codec, "w")
    except (av.FFmpegError, ValueError):
        print(f"error: --codec {args.codec!r} is not an FFmpeg encoder available here", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="decode-speed-") as tmp:
        work = Path(args.dir) if args.dir else Path(tmp)
        (work / "videos").mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        records = []
        for i in range(args.videos):
            path = work / "videos" / f"v{i:03d}{ext}"
            if not path.exists():
                synth_video(path, args.video_frames, args.width, args.height, args.fps, args.codec, i,
                            args.bit_rate)
            records.append(VideoRecord(path, i % 2, path.name))
        mb = sum(r.path.stat().st_size for r in records) / 2**20
        config = {k: v for k, v in vars(args).items() if k != "dir"}
        print("config", json.dumps(config))
        print("machine", json.dumps(machine()))
        print(f"videos: {args.videos} x {args.video_frames} frames {args.width}x{args.height} {args.codec}, "
              f"{mb:.1f} MiB, generated in {time.perf_counter() - t:.1f} s")
        kw = dict(frames=args.frames, resolution=args.resolution, mode=args.mode, threads=args.threads,
                  scan=False)
        runs = [("decode", None)]
        if not args.no_cache:
            side = args.cache_short_side or None
            cache = FrameCache(work / f"cache-{side or 'native'}", short_side=side)
            t = time.perf_counter()
            cache.build((r.path for r in records), progress=False)
            print(f"cache: short side {side or 'native'}, built in {time.perf_counter() - t:.2f} s, "
                  f"{cache.nbytes() / 2**20:.1f} MiB on disk")
            runs.append(("cache", cache))
        print(f"{'source':<8} {'workers':>7} {'clips/s':>9} {'first batch s':>14}")
        for name, cache in runs:
            ds = VideoClipDataset(records, ["a", "b"], cache=cache, **kw)
            for workers in args.workers:
                rate, startup = time_loader(ds, workers, args.batch, args.clips, seed=0)
                print(f"{name:<8} {workers:>7} {rate:>9.1f} {startup:>14.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
