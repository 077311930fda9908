"""Training CLI and loop on tiny configs: outputs, reproducibility, exact resume, config errors."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from respike_tests_helpers import lively_model

from respike_neuro import allocator as alloc_mod
from respike_neuro import train as train_mod
from respike_neuro.checkpoint import load_checkpoint, load_model
from respike_neuro.config import VARIANTS, TrainConfig
from respike_neuro.models import memory
from respike_neuro.train import ConfigError, build_run_config, lr_factor, main, make_parser, read_yaml, run

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(num_classes=12, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=[1, 1, 1, 1])


def tiny(out: Path, **train) -> dict:
    return {
        "model": dict(TINY_MODEL),
        "data": {"dataset": "synthetic", "train_clips": 8, "val_clips": 4, "test_clips": 4},
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "lr": 0.02,
            "out": str(out),
            "progress": False,
            "log_every_steps": 1,
            "eval_batch_size": 8,
            **train,
        },
    }


def step_losses(out: Path) -> list[float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "step"]


@pytest.mark.slow  # a training loop
def test_one_epoch_writes_outputs_and_repeats_exactly(tmp_path):
    summaries = [run(build_run_config(tiny(tmp_path / name), source="test")) for name in ("a", "b")]
    a = tmp_path / "a"
    for name in (
        "last.pt",
        "best.pt",
        "metrics.jsonl",
        "config.yaml",
        "test_results.json",
        "confusion_test.png",
    ):
        assert (a / name).is_file(), name
    records = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["step", "step", "epoch", "test"]
    epoch = records[2]
    for key in ("loss", "lr", "train_acc", "val_acc", "time", "clips_per_s"):
        assert isinstance(epoch[key], float), key
    assert summaries[0]["test"]["num_clips"] == 4 and summaries[0]["finished"]
    model, ckpt = load_model(a / "best.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2 and len(ckpt["class_names"]) == 12
    assert ckpt["train_config"]["train"]["out"] == str(a)
    # same config twice: same loss curve and same weights, bit for bit on CPU
    assert step_losses(a) == step_losses(tmp_path / "b")
    wa, wb = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the resolved config written next to the run reloads to the same config
    again = build_run_config(read_yaml(a / "config.yaml"), source="config.yaml")
    assert again.to_dict() == build_run_config(tiny(a), source="test").to_dict()


def snn_only(out: Path, **train) -> dict:
    """E6 (SNN on residuals): the same loop without the ResNet-18, several times faster."""
    return tiny(out, **train) | {"variant": "E6"}


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run(build_run_config(snn_only(full, epochs=2), source="test"))
    first = run(build_run_config(snn_only(part, epochs=2, max_steps=1), source="test"))  # stops mid-epoch 1
    assert not first["finished"] and load_checkpoint(part / "last.pt")["epoch_step"] == 1
    assert not (part / "test_results.json").exists()  # the test split is only run at the very end
    # auto-resume (last.pt in out), stop mid-epoch 2
    run(build_run_config(snn_only(part, epochs=2, max_steps=3), source="test"))
    assert load_checkpoint(part / "last.pt")["step"] == 3
    run(build_run_config(snn_only(part, epochs=2), source="test"))  # auto-resume to the end
    assert step_losses(part) == step_losses(full)
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(part / "last.pt")
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(x, y) for x, y in zip(_flat(a["optimizer"]), _flat(b["optimizer"])))
    t_full = json.loads((full / "test_results.json").read_text())
    t_part = json.loads((part / "test_results.json").read_text())
    assert t_full["confusion"] == t_part["confusion"]


def _flat(opt_state: dict) -> list[torch.Tensor]:
    return [v for s in opt_state["state"].values() for v in s.values() if isinstance(v, torch.Tensor)]


def test_resume_refuses_another_model(tmp_path):
    run(build_run_config(snn_only(tmp_path, max_steps=1), source="test"))
    other = snn_only(tmp_path)
    other["model"]["snn_width"] = 16
    with pytest.raises(ConfigError, match=r"cannot resume .*differs in \['snn_width'\]"):
        run(build_run_config(other, source="test"))


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, total=10, warmup=2, schedule="cosine", min_ratio=0.1) for s in range(11)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0) and f[2] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(f[2:10], f[3:11]))
    assert f[10] == pytest.approx(0.1)
    assert lr_factor(7, total=10, warmup=0, schedule="constant", min_ratio=0.0) == 1.0


def test_precedence_file_variant_cli(tmp_path):
    values = tiny(tmp_path) | {"variant": "E8"}
    cfg = build_run_config(values, {"train.epochs": 3, "model.snn_width": 4, "data.fold": 2}, source="f.yaml")
    assert cfg.model.attention is False and cfg.model.architecture == "hybrid"  # from E8
    assert cfg.model.snn_width == 4 and cfg.train.epochs == 3 and cfg.data.fold == 2
    cli_variant = build_run_config(values, {"variant": "E1"}, source="f.yaml")
    assert cli_variant.model.architecture == VARIANTS["E1"]["architecture"] and cli_variant.variant == "E1"
    assert build_run_config(tiny(tmp_path), {"train.lr": "1e-4"}).train.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("values", "overrides", "pattern"),
    [
        ({"train": {"epoch": 3}}, {}, r"f\.yaml: unknown key\(s\) \['train\.epoch'\]"),
        ({"model": {"width": 3}}, {}, r"f\.yaml: unknown key\(s\) \['model\.width'\]"),
        ({}, {"train.epoch": 3}, r"unknown key\(s\) \['train\.epoch'\]"),
        ({}, {"model.bogus": 3}, r"command line: unknown key\(s\) \['model\.bogus'\]"),
        ({}, {"bogus": 3}, r"command line: unknown key 'bogus'"),
        ({}, {"train.epochs": "three"}, r"train\.epochs must be int, got 'three'"),
        ({}, {"data.cache": 1}, r"data\.cache must be bool"),
        ({}, {"model.stride": 3}, r"frames=4 is not divisible by stride=3"),
        ({}, {"variant": "E10"}, r"unknown variant 'E10'"),
        ({}, {"train.amp": "fp8"}, r"train\.amp must be auto, off, fp16 or bf16"),
        ({}, {"train.memory_format": "nhwc"}, r"train\.memory_format must be auto, channels_last or cont"),
        ({}, {"data.frames": 8}, r"data\.frames=8 differs from model\.frames=4"),
        ({}, {"train.heap_release_mb": -1}, r"train\.heap_release_mb must be >= 0, got -1"),
        ({}, {"train.allocator": "jemalloc"}, r"train\.allocator must be auto, tcmalloc or glibc, got 'jem"),
        ({}, {"train.allocator": "tcmalloc", "train.lean_heap": True}, r"train\.lean_heap is glibc's heap"),
    ],
)
def test_config_errors_name_the_key(tmp_path, values, overrides, pattern):
    base = tiny(tmp_path)
    for section, entries in values.items():
        base[section].update(entries)
    with pytest.raises(ConfigError, match=pattern):
        build_run_config(base, overrides, source="f.yaml")


def test_cli_unknown_key_exits_nonzero_with_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(tiny(tmp_path) | {"train": {"epochz": 1}}))
    proc = subprocess.run(
        [sys.executable, "-m", "respike_neuro.train", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "bad.yaml" in proc.stderr and "train.epochz" in proc.stderr


def test_cli_in_process_errors_and_help(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny(tmp_path / "run")))
    assert main(["--config", str(cfg), "--set", "train.batch_size=0"]) == 2
    assert "train.batch_size must be >= 1" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "novalue"]) == 2
    assert "SECTION.KEY=VALUE" in capsys.readouterr().err
    (tmp_path / "sec.yaml").write_text("trian: {epochs: 1}\n")
    assert main(["--config", str(tmp_path / "sec.yaml")]) == 2
    assert "unknown section(s) ['trian']" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    help_text = make_parser().format_help()
    for flag in (
        "--model.snn_width",
        "--data.clips_per_video",
        "--train.warmup_epochs",
        "--train.sync_bn",
        "--set",
        "--resume",
    ):
        assert flag in help_text, flag
    assert "GLOBAL batch per optimizer step" in help_text


def test_cli_trains_and_prints_paths(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny(tmp_path / "run")))
    args = [
        "--config",
        str(cfg),
        "--train.log_every_steps",
        "0",
        "--variant",
        "E6",
        "--set",
        "data.cache=true",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test (4 videos" in out and str(tmp_path / "run" / "best.pt") in out
    assert str(tmp_path / "run" / "metrics.jsonl") in out


@pytest.mark.parametrize(
    "name", ["default.yaml", "paper_ucf101.yaml", "paper_hmdb51.yaml", "paper_kinetics400.yaml"]
)
def test_shipped_configs_parse(name):
    path = ROOT / "respike_neuro" / "configs" / name
    cfg = build_run_config(read_yaml(path), source=str(path))
    assert cfg.train.momentum == 0.9 and cfg.train.weight_decay == pytest.approx(1e-4)
    assert cfg.train.schedule == "cosine"


@pytest.mark.parametrize(("lean", "heap"), [(True, "glibc"), (False, "glibc"), (True, "tcmalloc")])
def test_train_step_follows_lean_memory(monkeypatch, lean, heap):
    """train.lean_memory switches the lean backward, glibc's heap trim before backward (tcmalloc
    reuses its free spans: a release there raised the peak) and the SGD update inside backward
    together, and the two steps it takes are the plain ones (tests/models/test_memory.py checks the
    gradients op by op, tests/test_sgd_in_backward.py the update)."""
    seen = {"plain": [], "trims": 0}
    real_plain = memory.plain_backward

    def recording_plain(plain=True):
        seen["plain"].append(plain)
        return real_plain(plain)

    monkeypatch.setattr(train_mod, "plain_backward", recording_plain)
    monkeypatch.setattr(train_mod, "release_free_heap", lambda: seen.__setitem__("trims", seen["trims"] + 1))
    monkeypatch.setattr(train_mod, "heap_in_use", lambda: heap)
    runs = []
    for lean_memory in (lean, not lean):
        model = lively_model(seed=5).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        r = types.SimpleNamespace(
            cfg=types.SimpleNamespace(train=TrainConfig(lean_memory=lean_memory, accum_steps=1)),
            device=torch.device("cpu"),
            model=model,
            info=types.SimpleNamespace(enabled=False),
            amp_dtype=None,
            scaler=torch.amp.GradScaler("cuda", enabled=False),
            optimizer=opt,
            scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s)),
        )
        batches = []
        for step in range(2):
            clip = 0.5 * torch.randn(2, 8, 3, 64, 64, generator=torch.Generator().manual_seed(step))
            batches.append(train_mod.train_step(r, clip, [3, 7])[0])
        grads_kept = [p.grad is not None for p in model.parameters()]
        assert all(grads_kept) if not lean_memory else not any(grads_kept)  # SGD ran inside backward
        runs.append((batches, [p.detach().clone() for p in model.parameters()]))
    assert seen["plain"] == [not lean, not lean, lean, lean]
    assert seen["trims"] == (2 if heap == "glibc" else 0)  # before each lean step's backward, on glibc
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("heap_release_mb", "device"), [(0.0, "cpu"), (96.0, "cpu"), (96.0, "cuda")])
def test_heap_release_at_the_edges_only_when_asked(monkeypatch, heap_release_mb, device):
    """train.heap_release_mb > 0 on a CPU hooks every region edge of the model (allocator.release_heap_at
    is tested in tests/test_allocator.py); run() enters it around each epoch's steps."""
    entered = []

    @contextlib.contextmanager
    def recording(modules, *, waste_mb):
        entered.append((len(list(modules)), waste_mb))
        yield

    monkeypatch.setattr(train_mod, "release_heap_at", recording)
    model = lively_model(seed=5)
    r = types.SimpleNamespace(
        cfg=types.SimpleNamespace(train=TrainConfig(heap_release_mb=heap_release_mb)),
        device=torch.device(device),
        model=model,
    )
    with train_mod._heap_release(r):
        pass
    edges = sum(len(ms) for ms in model.regions().values())
    assert entered == ([(edges, heap_release_mb)] if heap_release_mb and device == "cpu" else [])


@pytest.mark.parametrize(
    ("allocator", "lean_heap", "device", "found", "restarts"),
    [
        ("auto", False, "cpu", True, ["tcmalloc"]),
        ("auto", False, "cpu", False, []),
        ("auto", True, "cpu", True, ["lean"]),
        ("auto", False, "cuda", True, []),
        ("glibc", False, "cpu", True, []),
        ("glibc", True, "cpu", True, ["lean"]),
        ("glibc", True, "cuda", True, []),
    ],
)
def test_a_cpu_command_restarts_on_the_heap_it_asks_for(
    monkeypatch, capsys, allocator, lean_heap, device, found, restarts
):
    """train.allocator auto restarts a CPU command with tcmalloc preloaded where the system has it,
    train.lean_heap with glibc's tunables (allocator.restart_with_*, tested in tests/test_allocator.py);
    one line says which heap and why. main() called from Python (argv given) never replaces its caller."""
    calls = []
    monkeypatch.setattr(train_mod, "restart_with_lean_heap", lambda: calls.append("lean"))
    monkeypatch.setattr(train_mod, "restart_with_tcmalloc", lambda library: calls.append("tcmalloc"))
    monkeypatch.setattr(train_mod, "lean_heap_unavailable", lambda: None)
    monkeypatch.setattr(train_mod, "resolve_device", lambda _name: torch.device(device))
    monkeypatch.setattr(alloc_mod, "_tcmalloc", lambda: None)
    monkeypatch.setattr(alloc_mod.platform, "machine", lambda: "x86_64")  # auto's choice there
    library = "/x/libtcmalloc_minimal.so.4" if found else None
    monkeypatch.setattr(alloc_mod, "tcmalloc_library", lambda: library)
    cfg = types.SimpleNamespace(train=TrainConfig(allocator=allocator, lean_heap=lean_heap))
    train_mod._choose_heap(cfg)
    assert calls == restarts
    if not restarts:  # the restarted process says it
        line = capsys.readouterr().err.strip()
        assert line.startswith(f"train.allocator {allocator}: glibc (")
        assert ("libtcmalloc-minimal4" in line) == (not found and device == "cpu" and allocator == "auto")
    monkeypatch.setattr(train_mod, "lean_heap_unavailable", lambda: "no huge pages")
    calls.clear()
    train_mod._choose_heap(cfg)  # the system cannot give the lean heap: one line why, no restart
    assert "lean" not in calls
    if lean_heap and device == "cpu":
        assert "train.lean_heap not available here: no huge pages" in capsys.readouterr().err
    monkeypatch.setattr(train_mod, "_choose_heap", lambda cfg: calls.append("restart"))
    monkeypatch.setattr(train_mod, "_train_and_report", lambda cfg: 0)
    assert train_mod.main(["--set", "train.lean_heap=true", "train.device=cpu"]) == 0
    assert "restart" not in calls


def test_an_explicit_tcmalloc_the_system_lacks_stops_the_command(monkeypatch, capsys):
    monkeypatch.setattr(alloc_mod, "_tcmalloc", lambda: None)
    monkeypatch.setattr(alloc_mod, "tcmalloc_library", lambda: None)
    monkeypatch.setattr(train_mod, "_train_and_report", lambda cfg: pytest.fail("trained without tcmalloc"))
    monkeypatch.setattr(sys, "argv", ["train", "--set", "train.allocator=tcmalloc", "train.device=cpu"])
    assert train_mod.main() == 2
    assert "train.allocator tcmalloc: tcmalloc not found on this system" in capsys.readouterr().err
