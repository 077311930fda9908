"""Metrics on hand-made logits, and the evaluate CLI on a real (untrained) checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from respike_neuro.checkpoint import FORMAT_VERSION, save_checkpoint
from respike_neuro.config import ModelConfig
from respike_neuro.evaluate import compute_metrics, main, plot_confusion, predict, topk_correct
from respike_neuro.models.hybrid import build_model


def test_video_accuracy_averages_softmax_not_votes():
    # video 0 (label 0): two clips weakly prefer class 1, one clip strongly prefers class 0.
    # Majority vote says 1, the averaged softmax says 0.
    logits = torch.tensor(
        [
            [0.0, 0.3, -9.0],
            [0.0, 0.3, -9.0],
            [6.0, 0.0, -9.0],
            # video 1 (label 2): one clip, wrong at top-1, right at top-2
            [5.0, 0.0, 1.0],
        ]
    )
    labels = torch.tensor([0, 0, 0, 2])
    m = compute_metrics(logits, labels, video_index=[7, 7, 7, 3], topk=(1, 2))
    assert m["num_clips"] == 4 and m["num_videos"] == 2
    assert m["clip_top1"] == pytest.approx(1 / 4)
    assert m["video_top1"] == pytest.approx(1 / 2)
    p = torch.softmax(logits[:3], 1).mean(0)
    assert p.argmax() == 0  # the hand computation the metric must agree with
    assert m["clip_top2"] == 1.0 and m["video_top2"] == 1.0
    assert topk_correct(logits, labels, 1).tolist() == [False, False, True, False]


def test_topk_and_per_class_and_confusion():
    k = 7
    logits = torch.arange(k, dtype=torch.float32).repeat(6, 1)  # ranking: 6 > 5 > 4 > 3 > 2 > 1 > 0
    labels = torch.tensor([6, 2, 1, 0, 6, 3])
    m = compute_metrics(logits, labels, class_names=[f"c{i}" for i in range(k)])
    assert m["clip_top1"] == pytest.approx(2 / 6)  # only label 6 is top-1
    assert m["clip_top5"] == pytest.approx(4 / 6)  # top-5 = {6,5,4,3,2}: labels 6,2,6,3
    assert m["video_top5"] == m["clip_top5"]  # one clip per video without video_index
    assert m["per_class_accuracy"]["c6"] == 1.0 and m["per_class_accuracy"]["c2"] == 0.0
    assert m["per_class_accuracy"]["c5"] is None  # no samples of class 5
    assert m["mean_class_accuracy"] == pytest.approx(1 / 5)  # classes 6,2,1,0,3: only 6 right
    cm = torch.tensor(m["confusion"])
    assert cm.sum() == 6 and cm[:, 6].sum() == 6 and cm[6, 6] == 2 and cm[0, 6] == 1


def test_topk_clips_to_number_of_classes():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    m = compute_metrics(logits, torch.tensor([0, 0]))
    assert m["clip_top1"] == 0.5 and m["clip_top5"] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="different labels"):
        compute_metrics(torch.zeros(2, 3), torch.tensor([0, 1]), video_index=[5, 5])
    with pytest.raises(ValueError, match="one entry per clip"):
        compute_metrics(torch.zeros(2, 3), torch.tensor([0, 1]), video_index=[5])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        compute_metrics(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="class_names has 2 names"):
        compute_metrics(torch.zeros(2, 3), torch.tensor([0, 1]), class_names=["a", "b"])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def test_confusion_png(tmp_path):
    path = plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TINY = dict(num_classes=12, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=(1, 1, 1, 1))


def test_predict_keeps_dataset_order():
    from respike_neuro.data.synthetic import SyntheticActions

    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    ds = SyntheticActions(split="test", num_clips=5, frames=4, resolution=32, seed=0)
    logits, labels = predict(model, ds, device=torch.device("cpu"), batch_size=2, progress=False)
    assert labels.tolist() == [ds[i][1] for i in range(5)]
    with torch.no_grad():
        direct = model.eval()(ds[3][0][None])
    torch.testing.assert_close(logits[3:4], direct, rtol=1e-4, atol=1e-5)


def _untrained_checkpoint(path, class_names, data: dict):
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    state = dict(
        format_version=FORMAT_VERSION,
        model_config=cfg.to_dict(),
        model=build_model(cfg).state_dict(),
        train_config={"data": {"dataset": "synthetic", **data}},
        epoch=0,
        step=0,
        class_names=class_names,
    )
    save_checkpoint(path, state)
    return path


def test_cli_on_checkpoint(tmp_path, capsys):
    ckpt = _untrained_checkpoint(tmp_path / "best.pt", [f"class{i}" for i in range(12)], {"test_clips": 6})
    rc = main([str(ckpt), "--split", "test", "--num-clips", "12", "--batch-size", "4", "--no-progress"])
    # the synthetic dataset's own names differ from the checkpoint's made-up ones: a clear error
    assert rc == 1 and "classes differ" in capsys.readouterr().err
    from respike_neuro.data.synthetic import SyntheticActions

    real = SyntheticActions(split="test", num_clips=12, frames=4, resolution=32).class_names
    save_checkpoint(ckpt, torch.load(ckpt, weights_only=True) | {"class_names": real})
    rc = main(
        [
            str(ckpt),
            "--split",
            "test",
            "--num-clips",
            "12",
            "--batch-size",
            "4",
            "--no-progress",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["num_clips"] == 12 and res["split"] == "test"
    assert sum(map(sum, res["confusion"])) == 12
    assert 0.0 <= res["video_top1"] <= 1.0 and not math.isnan(res["clip_top5"])
    assert (tmp_path / "ev" / "confusion.png").is_file()
    rc = main([str(tmp_path / "missing.pt")])  # a usage error, found before any work: exit 2
    assert rc == 2 and "no such file" in capsys.readouterr().err


def test_cli_evaluates_the_deployed_model(tmp_path, capsys):
    from respike_neuro.data.synthetic import SyntheticActions

    names = SyntheticActions(split="test", num_clips=12, frames=4, resolution=32).class_names
    ckpt = _untrained_checkpoint(tmp_path / "best.pt", names, {"test_clips": 6, "val_clips": 4})
    common = [str(ckpt), "--batch-size", "3", "--no-progress"]
    # float: host + emulated spiking branch reproduce PyTorch's decisions
    assert main([*common, "--deploy", "float", "--out", str(tmp_path / "f")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "deployed (float on emulator)" in out and "agreement deployed vs PyTorch: 1.0000" in out
    res = json.loads((tmp_path / "f" / "results.json").read_text())
    assert res["top1_agreement_with_pytorch"] == 1.0 and res["video_top1"] == res["pytorch"]["video_top1"]
    # fixed: calibrated on the validation split, never the test split
    assert main([*common, "--deploy", "fixed", "--calibration-clips", "2"]) == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "eval_test_fixed" / "results.json").read_text())
    assert res["deployment"]["calibration"] == "2 clips of the synthetic validation split"
    assert res["num_clips"] == 6 and 0.0 <= res["top1_agreement_with_pytorch"] <= 1.0
    assert main([*common, "--deploy", "fixed", "--calibration-clips", "0"]) == 2
    assert "--calibration-clips 0: must be >= 1" in capsys.readouterr().err
