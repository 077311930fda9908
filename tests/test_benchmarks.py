"""Smoke runs of the benchmark scripts on tiny sizes: they print the table they promise (the figures
themselves are measured with the full-size runs recorded in the README)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
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
