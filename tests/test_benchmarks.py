"""Smoke runs of the benchmark scripts on tiny sizes: they print the table they promise (the figures
themselves are measured with the full-size runs recorded in the README)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from respike_neuro import allocator

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--frames", "8", "--resolution", "64", "--snn-width", "8", "--threads", "1"]  # a model in seconds


def _load(name: str):
    """benchmarks/<name>.py as `python benchmarks/<name>.py` runs it: its folder first on sys.path."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lava_speed_reports_every_engine(tmp_path, capsys, children):
    bench = _load("lava_speed")
    out = tmp_path / "speed.json"
    args = ["--input-hw", "32", "--width", "4", "--stages", "1", "--blocks", "1", "--skip-stock"]
    assert bench.main([*args, "--breakdown", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "fixed" in table and "torch" in table and "16x16" in table
    (row,) = json.loads(out.read_text())
    for key in ("fast_dense_ms", "fast_sparse_ms", "fast_sparse_fixed_ms", "numpy_kernels_ms", "torch_ms"):
        assert row[key] > 0, key
    # where the time goes: every model of the stage ran and was timed, and the wrappers are gone again
    fixed = row["cpu_breakdown"]["fixed"]
    assert {"FastConvModelFixed", "FastLifResetModelBitAcc", "PyLoihiInjectorModel"} <= set(fixed)
    assert all(r["calls"] > 0 and r["cpu_ms_per_call"] >= 0 for r in fixed.values())
    assert f"FastConvModelFixed x{fixed['FastConvModelFixed']['processes']} " in table
    from respike_neuro.sim.procs.models import FastConvModelFixed

    assert FastConvModelFixed.run_spk.__qualname__ == "FastConvModelFixed.run_spk"
    assert children() == []


def test_perturbation_floor_reports_agreement_per_precision(tmp_path, capsys):
    bench = _load("perturbation_floor")
    spec = importlib.util.spec_from_file_location("bridge_helpers", ROOT / "tests" / "test_bridge.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    ckpt = helpers.make_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "floor.json"
    args = ["--clips", "4", "--repeats", "1", "--bits", "4", "40", "--json", str(out)]
    assert bench.main([str(ckpt), *args]) == 0
    assert "4-bit LSB" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["bits"] for r in rows] == [4, 40]
    assert rows[1]["agreement"] == [1.0]  # a 2**-40 perturbation changes no decision
    assert bench.main([str(tmp_path / "missing.pt")]) == 2


def test_train_memory_breakdown_names_every_region_and_the_spike_savings(capsys):
    bench = _load("train_memory")
    tiny = [*TINY, "--json"]
    reports = {}
    for plain in (True, False):
        assert bench.main(tiny + (["--plain-autograd"] if plain else [])) == 0
        reports[plain] = json.loads(capsys.readouterr().out)
    graph = reports[True]["saved_for_backward"]
    regions = set(graph["by_region_mb"])
    assert {"ann.stem", "snn.stem", "head"} | {f"snn.stage{k}" for k in (1, 2, 3, 4)} <= regions
    assert {f"fusion{k}" for k in (1, 2, 3, 4)} <= regions
    assert "_LIFSequenceBackward" in graph["by_kind_mb"] and "ConvolutionBackward0" in graph["by_kind_mb"]
    assert graph["binary_0_1_mb"] > 0  # plain torch keeps the spike conv inputs as float32
    lean = reports[False]["saved_for_backward"]
    assert lean["binary_0_1_mb"] == 0 and "_SpikeConv2dBackward" in lean["by_kind_mb"]
    assert lean["total_mb"] < graph["total_mb"]
    assert set(reports[False]["phases_mb"]) == {
        "after warm-up step (model, momentum, allocator)", "forward", "backward", "optimizer step"
    }
    bench.print_report(reports[False])
    assert "by region:" in capsys.readouterr().out


def test_train_step_runs_every_memory_setting(monkeypatch, capsys):
    bench = _load("train_step")
    tiny = ["train_step.py", *TINY, "--steps", "1", "--json"]
    settings = ([], ["--heap-release-mb", "1"], ["--plain-step", "--plain-autograd", "--keep-free-heap"])
    for extra in settings:
        monkeypatch.setattr(sys, "argv", tiny + extra)
        bench.main()
        result = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert result["s_per_step"] > 0 and result["peak_rss_mb"] > 0
        assert result["config"]["heap_release_mb"] == (1.0 if extra[:1] == ["--heap-release-mb"] else 0.0)
        assert result["lean_heap"] is False


def test_train_step_alternates_lean_and_plain_steps(monkeypatch, capsys):
    """--alternate plain times lean and plain steps in turn and pairs each plain step with a lean one."""
    bench = _load("train_step")
    argv = ["train_step.py", *TINY, "--steps", "4", "--alternate", "plain", "--json"]
    monkeypatch.setattr(sys, "argv", argv)
    modes = []
    original = bench.plain_backward
    monkeypatch.setattr(bench, "plain_backward", lambda plain=True: modes.append(plain) or original(plain))
    bench.main()
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert modes == [False, True] * 3  # warm-up of each mode, then two timed pairs
    assert result["alternate_s_per_step"] > 0 and result["s_per_step"] > 0
    lo, hi = result["alternate_ratio_range"]
    assert 0 < lo <= result["alternate_ratio"] <= hi


def test_train_step_alternates_channels_last_and_contiguous_models(monkeypatch, capsys):
    """--alternate contiguous steps a channels-last model and a contiguous copy of it in turn."""
    bench = _load("train_step")
    argv = ["train_step.py", *TINY, "--steps", "4", "--memory-format", "channels_last"]
    monkeypatch.setattr(sys, "argv", [*argv, "--alternate", "contiguous", "--json"])
    layouts = []
    original = bench.ReSpike.forward

    def forward(model, clip):
        layouts.append(model.snn.stem[0].weight.is_contiguous(memory_format=bench.torch.channels_last))
        return original(model, clip)
    monkeypatch.setattr(bench.ReSpike, "forward", forward)
    bench.main()
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert layouts == [True, False] * 3
    assert result["memory_format"] == "channels_last" and result["alternate_ratio"] > 0


def test_train_step_restarts_itself_with_the_lean_heap():
    """--lean-heap re-executes the benchmark with glibc's tunables (where the system has them)."""
    script = str(ROOT / "benchmarks" / "train_step.py")
    cmd = [sys.executable, script, *TINY, "--steps", "1", "--json", "--lean-heap"]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["lean_heap"] is (allocator.lean_heap_unavailable() is None)


def test_vs_authors_runs_the_authors_code_on_tcmalloc_when_asked(monkeypatch):
    """--authors-allocator tcmalloc preloads the library into the authors' process only, first."""
    bench = _load("vs_authors")
    seen = []

    def fake_run(cmd, *, env, **_kwargs):
        seen.append(env.get("LD_PRELOAD"))
        out = '{"s_per_step": 1.0, "peak_rss_mb": 9.0}\n'
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.setenv("LD_PRELOAD", "/y/libmine.so")
    assert bench.run_one(["x"], 2, 10.0)["peak_rss_mb"] == 9.0
    bench.run_one(["x"], 2, 10.0, "/x/libtcmalloc_minimal.so.4")
    assert seen == ["/y/libmine.so", "/x/libtcmalloc_minimal.so.4 /y/libmine.so"]
