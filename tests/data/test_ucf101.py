"""UCF-101: official lists, three folds, validation by group, corrupt/short videos, clip contract."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from respike_neuro.data.registry import build_dataset
from respike_neuro.data.ucf101 import UCF101, group_of, read_class_index, ucf101_records

pytestmark = pytest.mark.usefixtures("quiet_video_warnings")


def groups(records):
    return {group_of(r.video_id) for r in records}


def test_class_index_is_read_in_label_order(ucf_root, vf):
    assert read_class_index(ucf_root / "ucfTrainTestlist") == list(vf.UCF_CLASSES)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_folds_split_by_group_and_validation_comes_from_training_groups(ucf_root, vf, fold):
    test_group = vf.UCF_GROUPS[fold - 1]
    train, names = ucf101_records(ucf_root, split="train", fold=fold)
    val, _ = ucf101_records(ucf_root, split="val", fold=fold)
    test, _ = ucf101_records(ucf_root, split="test", fold=fold)
    assert names == list(vf.UCF_CLASSES)
    assert groups(test) == {test_group}
    train_groups = set(vf.UCF_GROUPS) - {test_group}
    assert groups(val) == {23, 24, 25} and groups(train) == train_groups - {23, 24, 25}
    assert len(train) + len(val) + len(test) == len(vf.UCF_CLASSES) * len(vf.UCF_GROUPS)
    for rec in train + val + test:
        assert rec.path.is_file()  # including the HandstandPushups/v_HandStandPushups_* spelling
        assert rec.label == vf.UCF_CLASSES.index(rec.video_id.split("/")[0])


def test_val_groups_count_or_explicit_set(ucf_root):
    assert groups(ucf101_records(ucf_root, split="val", fold=1, val_groups=1)[0]) == {25}
    assert groups(ucf101_records(ucf_root, split="train", fold=1, val_groups=1)[0]) == {8, 15, 23, 24}
    assert groups(ucf101_records(ucf_root, split="val", fold=2, val_groups=[1, 15])[0]) == {1, 15}
    assert groups(ucf101_records(ucf_root, split="train", fold=1, val_groups=0)[0]) == {8, 15, 23, 24, 25}
    with pytest.raises(ValueError, match="val split is empty"):
        ucf101_records(ucf_root, split="val", val_groups=0)
    with pytest.raises(ValueError, match="not training groups"):
        ucf101_records(ucf_root, split="val", fold=1, val_groups=[1])
    with pytest.raises(ValueError, match="val_groups must be in"):
        ucf101_records(ucf_root, split="val", fold=1, val_groups=5)


def test_eval_split_scans_skips_corrupt_and_counts_short(ucf_root, vf):
    ds = UCF101(ucf_root, split="val", fold=1, frames=8, resolution=16, clips_per_video=2)
    assert ds.mode == "eval" and ds.videos_skipped == 1 and ds.videos_short == 1
    assert vf.UCF_CORRUPT not in {r.video_id for r in ds.videos}
    assert len(ds.videos) == 8 and len(ds) == 16
    assert ds.video_index.tolist() == np.repeat(np.arange(8), 2).tolist()
    clip, label = ds[3]
    assert clip.shape == (8, 3, 16, 16) and clip.dtype == torch.float32
    assert label == ds.videos[1].label == int(ds.labels[3])


def test_test_clips_are_deterministic_and_train_epochs_survive_a_corrupt_file(ucf_root):
    a = UCF101(ucf_root, split="test", fold=3, frames=8, resolution=16, clips_per_video=3)
    b = build_dataset("UCF-101", root=ucf_root, split="test", fold=3, frames=8, resolution=16,
                      mode="test", clips_per_video=3)
    assert len(a) == len(b) == 9
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))
    train = UCF101(ucf_root, split="train", fold=1, frames=8, resolution=16, val_groups=1)
    assert train.mode == "train" and len(train) == 12 and train.videos_skipped == 0
    items = [train[i] for i in range(len(train))]
    assert train.videos_skipped == 1 and train.videos_short == 1
    assert all(c.shape == (8, 3, 16, 16) and torch.isfinite(c).all() for c, _ in items)


def test_bad_layouts_and_arguments_raise_clear_errors(ucf_root, tmp_path):
    with pytest.raises(ValueError, match="fold"):
        ucf101_records(ucf_root, fold=4)
    with pytest.raises(ValueError, match="split"):
        ucf101_records(ucf_root, split="dev")
    with pytest.raises(ValueError, match="ucfTrainTestlist"):
        ucf101_records(tmp_path)
    lists = tmp_path / "ucfTrainTestlist"
    shutil.copytree(ucf_root / "ucfTrainTestlist", lists)
    text = (lists / "trainlist01.txt").read_text().replace(" 1\n", " 2\n", 1)
    (lists / "trainlist01.txt").write_text(text)
    with pytest.raises(ValueError, match="disagrees with classInd"):
        ucf101_records(tmp_path, fold=1)
    (lists / "classInd.txt").write_text("1 A\n3 B\n")
    with pytest.raises(ValueError, match="class ids"):
        ucf101_records(tmp_path, fold=1)
    with pytest.raises(ValueError, match="_gXX_cYY"):
        group_of("ApplyEyeMakeup/clip.avi")
