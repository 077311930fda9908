"""Issue 15: Ctrl-C in training saves last.pt, a new run never deletes another run's results, metrics.jsonl
stays exact across a resume, writes are atomic and clean up after themselves."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch.nn.functional as F

import respike_neuro.train as train_mod
from respike_neuro.checkpoint import load_checkpoint
from respike_neuro.fileio import atomic_write, clean_stale_temporaries
from respike_neuro.train import build_run_config, main, run

TINY_MODEL = dict(num_classes=12, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=[1, 1, 1, 1])


def _cfg(out: Path, **train) -> dict:
    return {
        "model": dict(TINY_MODEL),
        "data": {"dataset": "synthetic", "train_clips": 16, "val_clips": 4, "test_clips": 0},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.02, "out": str(out), "progress": False,
                  "log_every_steps": 1, "eval_batch_size": 8, **train},
    }


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # a training loop
def test_ctrl_c_saves_last_pt_and_resume_labels_the_epoch(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "ref"
    run(build_run_config(_cfg(reference), source="test"))
    out = tmp_path / "run"
    calls = {"n": 0}
    real = F.cross_entropy

    def interrupting(*args, **kwargs):  # Ctrl-C arrives in the middle of step 2
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod.F, "cross_entropy", interrupting)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_cfg(out)))
    assert main(["--config", str(config)]) == 130
    assert "saved" in capsys.readouterr().err
    ckpt = load_checkpoint(out / "last.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["epoch_step"]) == (2, 0, 2)  # the step it was in finished
    monkeypatch.setattr(train_mod.F, "cross_entropy", real)
    assert main(["--config", str(config)]) == 0
    got, ref = _records(out), _records(reference)
    steps = [r["step"] for r in got if r["kind"] == "step"]
    assert steps == [1, 2, 3, 4]  # no step repeated, none missing
    epoch, ref_epoch = got[-1], ref[-1]
    assert epoch["kind"] == "epoch" and epoch["resumed_at_step"] == 2 and "loss_from_step" not in epoch
    assert epoch["loss"] == pytest.approx(ref_epoch["loss"], rel=1e-6)  # the whole epoch, not steps 3-4


def test_resume_drops_lines_written_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    run(build_run_config(_cfg(out, max_steps=2), source="test"))  # last.pt at step 2, mid-epoch
    with open(out / "metrics.jsonl", "a") as f:  # what a run killed at step 3 had logged
        f.write(json.dumps({"kind": "step", "epoch": 1, "step": 3, "loss": 9.0}) + "\n")
        f.write('{"kind": "step", "ep')  # a line cut short by kill -9
    run(build_run_config(_cfg(out), source="test"))
    steps = [r["step"] for r in _records(out) if r["kind"] == "step"]
    assert steps == [1, 2, 3, 4] and 9.0 not in [r["loss"] for r in _records(out)]


def test_new_run_never_deletes_another_runs_results(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"someone's best weights")
    (out / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 9}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(_cfg(out)))
    assert main(["--config", str(cfg)]) == 2  # resume auto, no last.pt: refused, nothing touched
    err = capsys.readouterr().err
    assert "another run's results (best.pt, metrics.jsonl)" in err and err.count("\n") == 1
    assert (out / "best.pt").read_bytes() == b"someone's best weights"
    assert main(["--config", str(cfg), "--resume", "never"]) == 0  # moved aside, said in one line
    moved = [line for line in capsys.readouterr().err.splitlines() if line.startswith("moved")]
    assert len(moved) == 1
    aside = next(out.glob("previous-*"))
    assert (aside / "best.pt").read_bytes() == b"someone's best weights"
    assert (aside / "metrics.jsonl").read_text() == '{"kind": "epoch", "epoch": 9}\n'
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_atomic_write_cleans_up_on_failure_and_removes_stale_temporaries(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def full_disk(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, full_disk)
    assert os.listdir(tmp_path) == ["results.json"] and target.read_text() == "old"
    with pytest.raises(OSError, match="empty file"):  # a writer that wrote nothing: no 0-byte result
        atomic_write(target, lambda tmp: None)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]
    dead = tmp_path / f".results.json.{2**22 + 12345}.abcd1234.tmp"  # pid above pid_max: not running
    dead.write_bytes(b"x" * 1000)
    mine = tmp_path / f".results.json.{os.getpid()}.live.tmp"  # this (live) process's own: kept
    mine.write_bytes(b"y")
    other = tmp_path / ".other.json.999999.abcd.tmp"  # another file's: not ours to judge
    other.write_bytes(b"z")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert not dead.exists() and mine.exists() and other.exists()
    assert clean_stale_temporaries(target) == []
    monkeypatch.setattr("respike_neuro.fileio.shutil.disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(OSError, match="no space left"):  # checked before writing
        atomic_write(target, "x" * 100, need_bytes=100)
    assert target.read_text() == "new"
