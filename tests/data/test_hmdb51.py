"""HMDB-51: split files (0 unused / 1 train / 2 test), three splits, validation by source video."""

from __future__ import annotations

import pytest
import torch

from respike_neuro.data.hmdb51 import HMDB51, hmdb51_records, source_of
from respike_neuro.data.registry import build_dataset
from respike_neuro.data.video import VideoDataWarning

pytestmark = pytest.mark.usefixtures("quiet_video_warnings")


def names(records):
    return {r.video_id for r in records}


def expected(vf, fold, wanted):
    return {vf.hmdb_name(c, s, n) for c in vf.HMDB_CLASSES
            for (s, n), i in zip(vf.HMDB_CLIPS, vf.HMDB_IDS[fold]) if i == wanted}


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_split_ids_select_train_and_test_and_skip_unused(hmdb_root, vf, fold):
    test, classes = hmdb51_records(hmdb_root, split="test", fold=fold)
    train, _ = hmdb51_records(hmdb_root, split="train", fold=fold)
    val, _ = hmdb51_records(hmdb_root, split="val", fold=fold)
    assert classes == sorted(vf.HMDB_CLASSES)
    assert names(test) == expected(vf, fold, 2)
    assert names(train) | names(val) == expected(vf, fold, 1) and not names(train) & names(val)
    for rec in test + train + val:
        assert rec.label == classes.index(rec.video_id.split("/")[0])


def test_validation_holds_out_whole_source_videos_per_class(hmdb_root):
    train, _ = hmdb51_records(hmdb_root, split="train", fold=3, val_fraction=0.3)
    val, _ = hmdb51_records(hmdb_root, split="val", fold=3, val_fraction=0.3)
    src = lambda recs: {(r.label, source_of(r.video_id, r.video_id.split("/")[0])) for r in recs}  # noqa: E731
    assert not src(train) & src(val)
    assert {r.label for r in val} == {0, 1, 2}  # every class is represented
    again, _ = hmdb51_records(hmdb_root, split="val", fold=3, val_fraction=0.3)
    assert [r.video_id for r in again] == [r.video_id for r in val]


def test_source_of_strips_tags_and_clip_number():
    assert source_of("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "brush_hair") == "April_09"
    assert source_of("April_09_brush_hair_u_nm_np1_ba_goo_1.avi", "brush_hair") == "April_09"
    assert source_of("odd_name_3.avi") == "odd_name"


def test_missing_corrupt_and_short_videos_are_counted(hmdb_root, vf):
    # split 1 training part: the short clip, the corrupt clip and the missing clip are all in it
    with pytest.warns(VideoDataWarning, match="missing"):
        ds = HMDB51(hmdb_root, split="train", fold=1, frames=8, resolution=16, val_fraction=0.0)
    assert ds.videos_missing == 1 and ds.missing[0].video_id == vf.HMDB_MISSING
    assert len(ds) == 11  # 12 listed for training, one missing
    items = [ds[i] for i in range(len(ds))]
    assert ds.videos_skipped == 1 and ds.videos_short == 1 and ds.skipped_videos == 2
    assert all(c.shape == (8, 3, 16, 16) for c, _ in items)


def test_test_split_through_registry_is_deterministic_with_video_index(hmdb_root):
    kw = dict(root=hmdb_root, split="test", fold=2, frames=8, resolution=16, clips_per_video=2)
    a, b = build_dataset("hmdb51", **kw), build_dataset("HMDB-51", **kw)
    assert a.mode == "eval" and len(a) == 2 * len(a.videos)
    assert a.video_index.tolist() == [i // 2 for i in range(len(a))]
    assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(len(a)))


def test_bad_layouts_raise_clear_errors(hmdb_root, tmp_path):
    with pytest.raises(ValueError, match="testTrainMulti_7030_splits"):
        hmdb51_records(tmp_path)
    with pytest.raises(ValueError, match="fold"):
        hmdb51_records(hmdb_root, fold=0)
    splits = tmp_path / "s"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("a.avi 3\n")
    with pytest.raises(ValueError, match="bad line"):
        hmdb51_records(tmp_path, splits_dir=splits, videos_dir=hmdb_root)
    (splits / "wave_test_split1.txt").write_text("a.avi 1\n")
    with pytest.raises(ValueError, match="class folders"):
        hmdb51_records(tmp_path, splits_dir=splits)
