"""Cross-validation CLI on tiny UCF-101 / HMDB-51 layouts: every fold trained and tested, mean reported,
finished folds reused, bad fold/dataset choices rejected."""

from __future__ import annotations

import json
import statistics

import pytest

from respike_neuro.crossval import main
from respike_neuro.data.registry import official_folds

TINY = [
    "model.frames=4", "model.stride=2", "model.resolution=32", "model.snn_width=8",
    "model.fusion_pool=[1,1,1,1]", "train.epochs=1", "train.batch_size=4", "train.progress=false",
    "train.eval_batch_size=8", "data.clips_per_video=2",
]


def _args(dataset: str, root, out, *extra: str) -> list[str]:
    return ["--variant", "E6", "--set", *TINY, f"data.dataset={dataset}", f"data.root={root}",
            "model.num_classes=3", "--out", str(out), *extra]


def test_ucf101_three_folds_mean_and_reuse(ucf_root, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(_args("ucf101", ucf_root, out)) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "crossval.json").read_text())
    assert result["summary"]["folds"] == [1, 2, 3] and result["reused_folds"] == []
    per_fold = []
    for fold in (1, 2, 3):
        test = json.loads((out / f"fold{fold}" / "test_results.json").read_text())
        # fold k tests on its own group (g01 / g08 / g15): 3 classes x 1 video, 2 clips each
        assert test["num_videos"] == 3 and test["num_clips"] == 6
        per_fold.append(test["video_top1"])
        assert result["per_fold"][str(fold)]["video_top1"] == test["video_top1"]
        cfg = (out / f"fold{fold}" / "config.yaml").read_text()
        assert f"fold: {fold}" in cfg
    s = result["summary"]["video_top1"]
    assert s["mean"] == pytest.approx(statistics.fmean(per_fold))
    assert s["std"] == pytest.approx(statistics.pstdev(per_fold))
    assert "mean" in printed and "crossval.json" in printed

    # the same command again trains nothing and reports the same numbers
    assert main(_args("ucf101", ucf_root, out)) == 0
    again = json.loads((out / "crossval.json").read_text())
    assert again["reused_folds"] == [1, 2, 3] and again["summary"] == result["summary"]


def test_hmdb51_selected_fold_only(hmdb_root, tmp_path):
    out = tmp_path / "cv"
    assert main(_args("hmdb51", hmdb_root, out, "--folds", "2")) == 0
    result = json.loads((out / "crossval.json").read_text())
    assert result["summary"]["folds"] == [2] and not (out / "fold1").exists()
    assert result["per_fold"]["2"]["num_videos"] > 0


@pytest.mark.parametrize(
    ("dataset", "extra", "message"),
    [
        ("kinetics400", [], "no official folds"),
        ("synthetic", [], "no official folds"),
        ("ucf101", ["--folds", "4"], "folds must be chosen from"),
        ("ucf101", ["--folds", "1", "1"], "folds repeat"),
    ],
)
def test_bad_choices_exit_nonzero_naming_the_problem(tmp_path, capsys, dataset, extra, message):
    assert main(_args(dataset, tmp_path, tmp_path / "cv", *extra)) == 2  # a bad choice: usage error
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cv" / "crossval.json").exists()


def test_official_folds():
    assert official_folds("UCF-101") == (1, 2, 3) and official_folds("hmdb") == (1, 2, 3)
    assert official_folds("k400") == () and official_folds("synthetic") == ()
