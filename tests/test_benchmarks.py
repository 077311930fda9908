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
    assert bench.main([*args, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "fixed" in table and "torch" in table and "16x16" in table
    (row,) = json.loads(out.read_text())
    for key in ("fast_dense_ms", "fast_sparse_ms", "fast_sparse_fixed_ms", "numpy_kernels_ms", "torch_ms"):
        assert row[key] > 0, key
    assert children() == []
