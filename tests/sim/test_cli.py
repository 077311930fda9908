"""sim/run_lava.py: end-to-end runs and one-line errors with a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

from respike_neuro.sim.demo_graphs import build_contract_graph

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "sim" / "run_lava.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.lava  # starts Lava without the children fixture
def test_snn_only_file_and_hybrid_with_recorded_inputs(tmp_path):
    snn = tmp_path / "snn.nir"
    nir.write(str(snn), build_contract_graph(channels=(4, 8), blocks=(1, 1), seed=1))
    r = _cli(snn, "--segments", 2, "--json", tmp_path / "o.json")
    assert r.returncode == 0, r.stderr
    assert "layer2.0.lif2" in r.stdout and "stage2_out" in r.stdout and "ms/step" in r.stdout
    hyb = tmp_path / "hyb.nir"
    nir.write(str(hyb), build_contract_graph(channels=(4, 8), blocks=(1, 1), hybrid=True, seed=1))
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "rec.npz",
        residual_in=rng.normal(size=(2, 3, 3, 16, 16)),
        stage2_in=rng.normal(size=(6, 4, 8, 8)),
    )
    r = _cli(hyb, "--inputs", tmp_path / "rec.npz", "--mode", "fixed")
    assert r.returncode == 0, r.stderr
    assert "segments 2 x T=3" in r.stdout and "Lava bit-exact with the integer emulator: True" in r.stdout
    r = _cli(hyb, "--inputs", tmp_path / "rec.npz", "--mode", "fixed", "--backend", "emulator")
    assert r.returncode == 0, r.stderr
    assert "-> 0 Lava processes" in r.stdout
    assert "run on the emulator backend (no Lava)" in r.stdout


@pytest.mark.slow  # a battery of CLI subprocesses (each imports torch)
def test_errors_are_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "x.nir"
    bad.write_text("hello")
    r = _cli(bad)
    assert r.returncode == 1 and "not a readable NIR file" in r.stderr and "Traceback" not in r.stderr
    g = build_contract_graph(channels=(4,), blocks=(1,))
    g.nodes["layer1.0.out"] = nir.Threshold(threshold=np.ones((4, 8, 8)))
    p = tmp_path / "unsup.nir"
    nir.write(str(p), g)
    r = _cli(p)
    assert r.returncode == 1 and "'layer1.0.out'" in r.stderr and "Threshold" in r.stderr
    good = tmp_path / "g.nir"
    nir.write(str(good), build_contract_graph(channels=(4,), blocks=(1,)))
    np.savez(tmp_path / "wrong.npz", residual_in=np.zeros((3, 3, 8, 8)))
    r = _cli(good, "--inputs", tmp_path / "wrong.npz")
    assert r.returncode == 1 and "residual_in" in r.stderr and "expected" in r.stderr
    assert "Traceback" not in r.stderr
    for argv, message in [  # usage errors: exit 2 before anything starts
        ((good, "--json", good), "is also an input"),
        ((good, "--timesteps", "0"), "--timesteps 0: must be >= 1"),
        ((good, "--timesteps", "100000000000"), "--timesteps 100000000000: must be"),
        ((tmp_path / "missing.nir",), "no such file"),
    ]:
        r = _cli(*argv)
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, (argv, r.stderr)
