"""Tiny real videos (PyAV) in the official layouts of UCF-101, HMDB-51 and Kinetics-400.

Frame k of an "index" video is a flat grey of value LEVEL0 + LEVEL_STEP * k, so the index of a
decoded frame can be read back from its mean even after lossy coding (error < 3 grey levels,
measured for mpeg4/h264). "static" videos repeat one textured frame; written with a lossless
codec (png), their decoded frames are bit-identical, so any difference after the pipeline comes
from the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

LEVEL0, LEVEL_STEP = 16, 8  # grey levels up to 16 + 8 * 29 = 248: at most 30 index frames
W, H = 32, 24


def frame_level(k: int) -> int:
    return LEVEL0 + LEVEL_STEP * (k % 30)


def decoded_index(frame: np.ndarray) -> int:
    """Frame index of a decoded "index" frame (uint8 (H, W, 3) or float in [0, 1] (3, H, W))."""
    mean = float(frame.mean()) * (255.0 if frame.dtype != np.uint8 else 1.0)
    return int(round((mean - LEVEL0) / LEVEL_STEP))


def textured_frame(seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 4 % 256], -1)
    return np.clip(base + rng.integers(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)


def write_video(path: Path, num_frames: int, *, content: str = "index", codec: str | None = None,
                fps: int = 25, w: int = W, h: int = H, gop: int | None = None) -> Path:
    """Write a video; codec defaults to mpeg4 (.avi), libx264 (.mp4), png for static content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec is None:
        codec = "png" if content == "static" else ("libx264" if path.suffix == ".mp4" else "mpeg4")
    still = textured_frame(w=w, h=h)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "rgb24" if codec == "png" else "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        for k in range(num_frames):
            if content == "index":
                arr = np.full((h, w, 3), frame_level(k), dtype=np.uint8)
            elif content == "static":
                arr = still
            elif content == "noise":
                arr = np.random.default_rng(k).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            else:
                raise ValueError(f"unknown content {content!r}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_corrupt(path: Path) -> Path:
    """Bytes that no demuxer accepts, under a video file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage " * 40)
    return path


# -- UCF-101 -------------------------------------------------------------------------------------

UCF_CLASSES = ("ApplyEyeMakeup", "Basketball", "HandstandPushups")
UCF_FILE_CLASS = {"HandstandPushups": "HandStandPushups"}  # the real dataset's file-name spelling
UCF_GROUPS = (1, 8, 15, 23, 24, 25)  # fold k tests on g01-07 / g08-14 / g15-21
UCF_CORRUPT = "Basketball/v_Basketball_g24_c01.avi"  # train (val_groups=1) in every fold
UCF_SHORT = "ApplyEyeMakeup/v_ApplyEyeMakeup_g23_c01.avi"  # 5 frames, train in every fold
UCF_FRAMES = 20


def ucf_name(cls: str, group: int, clip: int = 1) -> str:
    return f"{cls}/v_{UCF_FILE_CLASS.get(cls, cls)}_g{group:02d}_c{clip:02d}.avi"


def make_ucf101(root: Path) -> Path:
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    for cls in UCF_CLASSES:
        for g in UCF_GROUPS:
            rel = ucf_name(cls, g)
            if rel == UCF_CORRUPT:
                write_corrupt(videos / rel)
            else:
                write_video(videos / rel, 5 if rel == UCF_SHORT else UCF_FRAMES)
    for fold in (1, 2, 3):
        test_groups = set(range(7 * fold - 6, 7 * fold + 1))
        train = [(ucf_name(c, g), i + 1) for i, c in enumerate(UCF_CLASSES) for g in UCF_GROUPS
                 if g not in test_groups]
        test = [ucf_name(c, g) for c in UCF_CLASSES for g in UCF_GROUPS if g in test_groups]
        (lists / f"trainlist0{fold}.txt").write_text("".join(f"{r} {y}\r\n" for r, y in train))
        (lists / f"testlist0{fold}.txt").write_text("".join(f"{r}\r\n" for r in test))
    return root


# -- HMDB-51 -------------------------------------------------------------------------------------

HMDB_CLASSES = ("brush_hair", "jump", "wave")
# (source, clip number) per class: 4 sources, 6 clips; the split ids below refer to this order
HMDB_CLIPS = (("Amelie", 0), ("Amelie", 1), ("Brazil", 0), ("Casablanca", 0), ("Dogma", 0), ("Dogma", 1))
HMDB_IDS = {1: (1, 1, 1, 1, 2, 2), 2: (2, 2, 1, 1, 1, 0), 3: (1, 1, 2, 0, 1, 1)}
HMDB_CORRUPT = "jump/Brazil_jump_f_cm_np1_ri_med_0.avi"
HMDB_SHORT = "wave/Casablanca_wave_f_cm_np1_ri_med_0.avi"
HMDB_MISSING = "wave/Amelie_wave_f_cm_np1_ri_med_1.avi"  # listed, never written


def hmdb_name(cls: str, source: str, n: int) -> str:
    return f"{cls}/{source}_{cls}_f_cm_np1_ri_med_{n}.avi"


def make_hmdb51(root: Path) -> Path:
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in HMDB_CLASSES:
        names = [hmdb_name(cls, s, n) for s, n in HMDB_CLIPS]
        for rel in names:
            if rel == HMDB_CORRUPT:
                write_corrupt(root / rel)
            elif rel != HMDB_MISSING:
                write_video(root / rel, 5 if rel == HMDB_SHORT else 20)
        for k, ids in HMDB_IDS.items():
            text = "".join(f"{Path(rel).name} {i} \n" for rel, i in zip(names, ids))
            (splits / f"{cls}_test_split{k}.txt").write_text(text)
    return root


# -- Kinetics-400 --------------------------------------------------------------------------------

K400_CLASSES = ("abseiling", "air drumming", "zumba")
K400_TRAIN_PER_CLASS = 4
K400_VAL_PER_CLASS = 2
K400_MISSING = {"train": {"ab0000002_000010_000020"}, "validate": {"zu0000100_000010_000020"}}
K400_CORRUPT = "ai0000101_000010_000020"  # a validate clip


def k400_rows(which: str) -> list[tuple[str, str, int, int]]:
    per, offset = (K400_TRAIN_PER_CLASS, 0) if which == "train" else (K400_VAL_PER_CLASS, 100)
    return [(label, f"{label[:2]}{offset + i:07d}", 10, 20) for label in K400_CLASSES for i in range(per)]


def make_kinetics(root: Path) -> Path:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    for which, split_word in (("train", "train"), ("validate", "val")):
        lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
        for label, yt, s, e in k400_rows(which):
            quoted = f'"{label}"' if " " in label else label
            lines.append(f"{quoted},{yt},{s},{e},{split_word},0")
            stem = f"{yt}_{s:06d}_{e:06d}"
            if stem in K400_MISSING[which]:
                continue
            # train: per-label folders; val: one flat folder
            folder = root / "train" / label.replace(" ", "_") if which == "train" else root / "val"
            if stem == K400_CORRUPT:
                write_corrupt(folder / f"{stem}.mp4")
            else:
                write_video(folder / f"{stem}.mp4", 20)
        (ann / f"{which}.csv").write_text("\n".join(lines) + "\n")
    return root
