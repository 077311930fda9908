"""`python export/to_nir.py ckpt.pt [-o out.nir] [--validate]`: output, summary and clean errors."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from respike_neuro.checkpoint import FORMAT_VERSION
from respike_neuro.config import small
from respike_neuro.models.hybrid import build_model

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "export" / "to_nir.py"


def _load_cli():
    spec = importlib.util.spec_from_file_location("to_nir_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()


def write_checkpoint(path: Path, architecture: str, **extra_state) -> Path:
    inputs = {"hybrid": "key+res", "snn": "res", "ann": "key"}[architecture]
    cfg = small(snn_width=8, architecture=architecture, inputs=inputs)
    torch.manual_seed(0)
    model = build_model(cfg)
    state = model.state_dict()
    state.update(extra_state)
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "model_config": cfg.to_dict(),
            "model": state,
            "epoch": 0,
            "step": 0,
            "class_names": [f"c{i}" for i in range(cfg.num_classes)],
        },
        path,
    )
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # end to end through the CLI: export, then validate against PyTorch
def test_script_exports_and_validates_hybrid(tmp_path):
    ckpt = write_checkpoint(tmp_path / "hyb.pt", "hybrid")
    out = tmp_path / "hyb.nir"
    proc = run_cli(str(ckpt), "-o", str(out), "--validate")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "nodes: 57 (4 AvgPool2d, 21 Conv2d, 4 Input, 16 LIF, 4 Output, 8 Scale)" in text
    assert "input  stage3_in: (16, 8, 8)" in text and "output stage4_out: (64, 2, 2)" in text
    assert "neurons (LIF): 23,296" in text and "synapses" in text and "edges: 61" in text
    assert "spikes identical in 16/16 LIF layers" in text
    graph = nir.read(out)
    assert graph.metadata["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_main_default_output_name_snn_only(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "snn.pt", "snn")
    assert cli.main([str(ckpt), "--float32"]) == 0
    graph = nir.read(tmp_path / "snn.nir")
    assert [k for k, n in graph.nodes.items() if isinstance(n, (nir.Input, nir.Output))] == [
        "residual_in",
        "stage4_out",
    ]
    assert graph.nodes["stem.conv"].weight.dtype == np.float32
    assert "output stage4_out" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d, "not a file"),
        (lambda d: d / "missing.pt", "no such file"),
        (lambda d: _text_file(d / "notes.pt"), "not a readable (checkpoint|torch file)"),
        (lambda d: _truncated(d), "truncated"),
        (lambda d: _saved(d / "list.pt", [1, 2]), "not a (ReSpike checkpoint|checkpoint dict)"),
        (lambda d: _saved(d / "nocfg.pt", {"model": {}}), "model_config"),
        (lambda d: write_checkpoint(d / "ann.pt", "ann"), "no spiking branch"),
        (
            lambda d: write_checkpoint(
                d / "odd.pt", "snn", **{"snn.stages.0.1.dropout.weight": torch.ones(1)}
            ),
            "unsupported layer.*snn.stages.0.1.dropout",
        ),
    ],
)
def test_bad_checkpoints_exit_nonzero_with_one_line(tmp_path, capsys, make, message):
    target = make(tmp_path)
    usage = message in ("not a file", "no such file")  # the command line names no file: exit 2
    assert cli.main([str(target), "-o", str(tmp_path / "out.nir")]) == (2 if usage else 1)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "out.nir").exists()


def test_unwritable_output_and_no_traceback(tmp_path):
    ckpt = write_checkpoint(tmp_path / "snn.pt", "snn")
    proc = run_cli(str(ckpt), "-o", "/proc/respike-test.nir")  # not writable, even for root
    assert proc.returncode == 2  # found before any work: a usage error
    assert proc.stderr.startswith("error: cannot write") and "Traceback" not in proc.stderr


def test_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "model.nir"
    out.write_bytes(b"previous export")
    bad = nir.NIRGraph(
        nodes={
            "i": nir.Input(input_type={"input": np.array([1])}),
            "o": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("i", "o")],
        metadata={"unstorable": {1, 2}},
    )  # h5py cannot store a set
    with pytest.raises(cli.ExportError, match="cannot write"):
        cli.write_atomic(bad, out)
    assert out.read_bytes() == b"previous export"
    assert sorted(os.listdir(tmp_path)) == ["model.nir"]


def _text_file(path: Path) -> Path:
    path.write_text("not a checkpoint\n")
    return path


def _saved(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _truncated(d: Path) -> Path:
    full = write_checkpoint(d / "full.pt", "snn")
    cut = d / "cut.pt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut
