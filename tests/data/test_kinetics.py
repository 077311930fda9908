"""Kinetics-400: CSV annotations, flat or per-label folders, missing videos counted, static clips."""

from __future__ import annotations

import warnings

import pytest
import torch

from respike_neuro.data.clips import split_key_residual
from respike_neuro.data.kinetics import Kinetics400, clip_name, kinetics_records, read_annotations
from respike_neuro.data.registry import build_dataset

pytestmark = pytest.mark.usefixtures("quiet_video_warnings")


def test_annotations_parse_quoted_labels_and_clip_names(kinetics_root, vf):
    rows = read_annotations(kinetics_root / "annotations" / "train.csv")
    assert len(rows) == len(vf.K400_CLASSES) * vf.K400_TRAIN_PER_CLASS
    assert ("air drumming", "ai0000000_000010_000020") in rows
    assert clip_name("abc", 5, 15) == "abc_000005_000015"


def test_splits_labels_and_folders(kinetics_root, vf):
    train, classes = kinetics_records(kinetics_root, split="train")
    val, _ = kinetics_records(kinetics_root, split="val")
    test, _ = kinetics_records(kinetics_root, split="test")
    assert classes == sorted(vf.K400_CLASSES)
    train_ids = {r.video_id for r in train}
    assert not train_ids & {r.video_id for r in val}
    assert len(train) + len(val) == len(vf.K400_CLASSES) * vf.K400_TRAIN_PER_CLASS
    assert {r.label for r in val} == {0, 1, 2}  # one held-out clip per class at least
    # test = the official validation set, from a flat folder; train from per-label folders
    assert {r.video_id for r in test} == {f"{yt}_{s:06d}_{e:06d}" for _, yt, s, e in vf.k400_rows("validate")}
    assert all(r.path.parent.name == "val" for r in test if r.path.exists())
    assert all(r.path.parent.parent.name == "train" for r in train if r.path.exists())
    for rec in train + test:
        assert classes[rec.label][:2] == rec.video_id[:2]


def test_missing_videos_are_counted_with_one_warning(kinetics_root, vf):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = Kinetics400(kinetics_root, split="test", frames=8, resolution=16)
    missing = [w for w in caught if "missing" in str(w.message)]
    assert len(missing) == 1 and "1 of 6 listed videos are missing" in str(missing[0].message)
    assert ds.videos_missing == 1 and ds.videos_skipped == 1  # plus the corrupt one, found by scan
    assert ds.skipped_videos == 2 and len(ds) == 4
    assert vf.K400_CORRUPT not in {r.video_id for r in ds.videos}


def test_train_clips_and_registry(kinetics_root):
    ds = build_dataset("k400", root=kinetics_root, split="train", frames=8, resolution=16, stride=4)
    train_all = len(kinetics_records(kinetics_root, split="train")[0])
    assert ds.mode == "train" and len(ds) == train_all - ds.videos_missing
    clip, label = ds[0]
    assert clip.shape == (8, 3, 16, 16) and clip.dtype == torch.float32 and 0 <= label < 3
    ev = build_dataset("kinetics400", root=kinetics_root, split="val", frames=8, resolution=16,
                       clips_per_video=2)
    assert ev.mode == "eval" and len(ev) == 2 * len(ev.videos)


def test_static_video_gives_exactly_zero_residuals(tmp_path, vf):
    # The authors' Kinetics loader normalised frames with the wrong channel statistics, so a static
    # scene produced non-zero residuals; here every frame goes through the same ops.
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nstill,stillvid01,0,10,train\nstill,stillvid02,0,10,train\n")
    for name in ("stillvid01_000000_000010", "stillvid02_000000_000010"):
        vf.write_video(tmp_path / "train" / f"{name}.avi", 12, content="static")
    for mode in ("train", "eval"):
        ds = Kinetics400(tmp_path, split="train", frames=8, resolution=16, mode=mode)
        clip, _ = ds[0]
        res = split_key_residual(clip.unsqueeze(0), 2).residual
        assert clip.abs().sum() > 0 and torch.equal(res, torch.zeros_like(res))


def test_bad_annotations_raise_clear_errors(kinetics_root, tmp_path):
    with pytest.raises(ValueError, match="train.csv"):
        kinetics_records(tmp_path)
    (tmp_path / "train.csv").write_text("label,youtube_id\nx,y\n")
    with pytest.raises(ValueError, match="time_start"):
        kinetics_records(tmp_path)
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end\nx,y,a,b\n")
    with pytest.raises(ValueError, match="bad time_start"):
        kinetics_records(tmp_path)
    with pytest.raises(ValueError, match="fold"):
        Kinetics400(kinetics_root, fold=2)
    with pytest.raises(ValueError, match="test_set"):
        kinetics_records(kinetics_root, split="test", test_set="holdout")
