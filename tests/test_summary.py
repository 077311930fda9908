"""The model card CLI: text and JSON on the small config and the paper's default, checkpoints, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from respike_neuro.checkpoint import save_checkpoint
from respike_neuro.config import ModelConfig, small
from respike_neuro.models.hybrid import build_model
from respike_neuro.summary import main

REPO = Path(__file__).resolve().parents[1]
SMALL = small(resolution=32, snn_width=8)


def _params(module):
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@pytest.fixture()
def small_yaml(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"model": SMALL.to_dict(), "train": {"epochs": 1}}))
    return path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_text_card_on_a_yaml_config(capsys, small_yaml, tmp_path):
    plot = tmp_path / "plots" / "energy.png"
    rc, out, err = run(capsys, "--config", small_yaml, "--layers", "--plot", plot)
    assert rc == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = build_model(SMALL)
    assert f"{_params(model):,}" in out  # total parameters
    for text in (
        "Parameters",
        "Stage shapes",
        "ASSUMED 0.1",
        "paper-compatible:",
        "complete:",
        "SNN spike-driven",
        "SNN dense parts",
        "layer1.0.conv1",
        "stem.conv",
    ):
        assert text in out, text
    assert "paper Table 3" not in out  # no paper row for a small config


def test_json_card_on_the_small_config(capsys, small_yaml):
    rc, out, _ = run(capsys, "--config", small_yaml, "--json", "--rate", "0.25", "--e-mac", "3.7")
    assert rc == 0
    card = json.loads(out)
    model = build_model(SMALL)
    parts = {"ann": model.ann, "snn": model.snn, "fusion": model.fusions, "head": model.head}
    assert card["parameters"] == {**{k: _params(m) for k, m in parts.items()}, "total": _params(model)}
    assert card["model_config"] == SMALL.to_dict()
    assert card["energy"]["energy_model"] == {"e_mac_pj": 3.7, "e_ac_pj": 0.9}
    assert card["spike_rates"]["mode"] == "assumed" and card["spike_rates"]["effective_rate"] == 0.25
    t, s = SMALL.stride - 1, SMALL.segments
    assert card["shapes"]["snn_stages"][0][:3] == [t, s, 8]
    assert [f["calls"] for f in card["shapes"]["fusion_tokens"]] == [t * s] * 4
    spike = [la for la in card["layers"] if la["component"] == "snn_spike"]
    assert spike and all(la["syops"] == pytest.approx(0.25 * la["dense_macs"]) for la in spike)
    comps = card["energy"]["components"]
    assert card["energy"]["complete"]["energy_mj"] == pytest.approx(
        sum(c["energy_mj"] for c in comps.values())
    )


def test_default_is_the_papers_reference_clip(capsys):
    rc, out, _ = run(capsys, "--json")
    assert rc == 0
    card = json.loads(out)
    assert card["model_config"] == ModelConfig().to_dict()
    with torch.device("meta"):
        ref = build_model(ModelConfig())
    assert card["parameters"]["total"] == _params(ref)
    assert round(card["energy"]["paper_compatible"]["ann_conv_macs"] / 1e9, 2) == 7.25
    assert [f["query_tokens"] for f in card["shapes"]["fusion_tokens"]] == [196, 196, 196, 49]
    assert card["energy"]["paper_table3"]["ca_macs"] == 7.22e9


def test_text_card_for_resnet50_shows_table3_beside_our_count(capsys):
    rc, out, err = run(capsys, "--ann", "resnet50", "--num-classes", 51, "--stride", 4)
    assert rc == 0, err
    assert "ANN conv 16.349 G" in out and "16.35 G + CA 7.22 G" in out
    assert "Complete minus paper-compatible" in out and "SNN stem conv" in out


def _checkpoint(path, cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    save_checkpoint(
        path,
        {
            "format_version": 1,
            "model_config": cfg.to_dict(),
            "model": model.state_dict(),
            "epoch": 0,
            "step": 0,
            "class_names": [str(i) for i in range(cfg.num_classes)],
        },
    )
    return path


def test_measured_rates_from_a_checkpoint(capsys, tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt.pt", SMALL)
    rc, out, err = run(capsys, "--checkpoint", ckpt, "--measure", "--clips", 2, "--batch-size", 2, "--json")
    assert rc == 0, err
    card = json.loads(out)
    rates = card["spike_rates"]
    assert rates["mode"] == "measured" and "MEASURED on 2 synthetic val clips" in rates["note"]
    assert len(rates["per_layer"]) == 2 * sum(SMALL.snn_blocks)
    assert all(0 <= r <= 1 for r in rates["per_layer"].values())
    for layer in card["layers"]:
        if "rate" in layer:
            assert layer["rate"] == rates["per_layer"][layer["rate_source"]]
    # clip geometry may be overridden on a checkpoint, weights-defining options may not
    rc, out, _ = run(capsys, "--checkpoint", ckpt, "--frames", 16, "--json")
    assert rc == 0 and json.loads(out)["clip"]["segments"] == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ann", "resnet9"], "unknown ANN backbone 'resnet9'"),
        (["--stride", "3"], "not divisible by stride=3"),
        (["--stride", "0"], "stride must be >= 1"),
        (["--resolution", "100"], "resolution a multiple of 32"),
        (["--variant", "E10"], "--variant 'E10' is unknown"),
        (["--architecture", "cnn"], "architecture must be one of"),
        (["--config", "missing.yaml"], "no such file"),
        (["--measure"], "--measure needs --checkpoint"),
        (["--rate", "1.5"], "must be in [0, 1]"),
        (["--e-mac", "-1"], "e_mac_pj must be"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_files(capsys, tmp_path):
    no_model = tmp_path / "c.yaml"
    no_model.write_text("train: {epochs: 1}\n")
    unknown_key = tmp_path / "u.yaml"
    unknown_key.write_text("model: {num_clases: 3}\n")
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"not a checkpoint")
    ckpt = _checkpoint(tmp_path / "ok.pt", SMALL)
    for argv, message in [
        (["--config", no_model], "`model:` section"),
        (["--config", unknown_key], "unknown model option(s) ['num_clases']"),

        (
            ["--checkpoint", ckpt, "--ann", "resnet50"],
            "--ann sets ann='resnet50', but the checkpoint was trained with ann='resnet18'",
        ),
        (["--checkpoint", ckpt, "--config", no_model], "not both"),
        (["--checkpoint", ckpt, "--variant", "E4"], "--variant E4 sets architecture='ann'"),
        (["--checkpoint", ckpt, "--measure", "--data", "ucf101"], "only the built-in 'synthetic'"),
    ]:
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and message in err and err.count("\n") == 1, (argv, err)
    rc, _, err = run(capsys, "--checkpoint", garbage)  # a bad file (not a bad command line): exit 1
    assert rc == 1 and "not a readable torch file" in err and err.count("\n") == 1, err


def test_cli_exit_status_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "respike_neuro.summary", "--ann", "vgg16"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: unknown ANN backbone") and "Traceback" not in proc.stderr


def test_variants_from_the_yaml_and_the_command_line(capsys, tmp_path):
    path = tmp_path / "e8.yaml"
    path.write_text(yaml.safe_dump({"model": SMALL.to_dict(), "variant": "E8"}))
    rc, out, _ = run(capsys, "--config", path, "--json")
    card = json.loads(out)
    assert rc == 0 and card["model_config"]["attention"] is False
    assert card["parameters"]["fusion"] == 0 and card["shapes"]["fusion_tokens"] == []
    assert card["energy"]["components"]["fusion"]["macs"] == 0
    # a command-line variant wins over the file's, explicit flags win over both
    rc, out, _ = run(capsys, "--config", path, "--variant", "E6", "--stride", "2", "--json")
    card = json.loads(out)
    assert (card["model_config"]["architecture"], card["model_config"]["stride"]) == ("snn", 2)
    assert card["parameters"]["ann"] == 0 and card["energy"]["components"]["ann"]["macs"] == 0
