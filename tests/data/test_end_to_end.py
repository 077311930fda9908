"""Train + evaluate end to end on each real dataset's official layout (tiny PyAV videos with a
corrupt, a too-short and, for HMDB-51/Kinetics, a missing file): the hybrid model trains one epoch,
the corrupt file is counted in the metrics log, and the evaluate CLI reproduces the test metrics."""

from __future__ import annotations

import json

import pytest

from respike_neuro.evaluate import main as evaluate_main
from respike_neuro.train import build_run_config, run

TINY_MODEL = dict(num_classes=3, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=[1, 1, 1, 1])


@pytest.mark.slow  # a training loop
@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51", "kinetics400"])
def test_train_then_evaluate(dataset, request, tmp_path, capsys):
    root = request.getfixturevalue({"ucf101": "ucf_root", "hmdb51": "hmdb_root",
                                    "kinetics400": "kinetics_root"}[dataset])
    out = tmp_path / "run"
    cfg = build_run_config(
        {
            "model": TINY_MODEL,
            "data": {"dataset": dataset, "root": str(root), "clips_per_video": 2, "cache": False},
            "train": {"epochs": 1, "batch_size": 4, "out": str(out), "progress": False, "eval_batch_size": 8},
        },
        source="test",
    )
    summary = run(cfg)
    test = summary["test"]
    assert test["num_clips"] == 2 * test["num_videos"] > 0
    assert 0.0 <= test["video_top1"] <= test["video_top5"] <= 1.0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r["kind"] == "epoch")
    skipped = epoch.get("skipped_videos", 0) + epoch.get("val_skipped_videos", 0)
    assert skipped >= 1, "the corrupt video must be counted in the metrics log"
    assert (out / "confusion_test.png").is_file()

    assert evaluate_main([str(out / "best.pt"), "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    for key in ("num_videos", "num_clips", "video_top1", "clip_top1", "video_top5"):
        assert again[key] == test[key], key
    assert str(tmp_path / "eval" / "results.json") in capsys.readouterr().out
