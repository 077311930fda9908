"""Quantisation-aware fine-tuning: the trained model is what Lava's fixed-point run computes, bit for bit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from respike_neuro.bridge import HybridBridge
from respike_neuro.qat import QATConfig, QATModel, deployable_graph, finetune, main, write_nir_atomic
from respike_neuro.sim.fixed_point import PINNED_KEY, WEIGHT_BITS_KEY, pinned_frac_bits, pinned_weight_bits

_spec = importlib.util.spec_from_file_location("bridge_helpers", Path(__file__).parent / "test_bridge.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_checkpoint, built_in_clips = _helpers.make_checkpoint, _helpers.built_in_clips

SMALL = QATConfig(
    epochs=1, lr=0.05, batch_size=4, clips_per_epoch=8, val_clips=8, calibration_clips=2, device="cpu"
)
NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("qat") / "hybrid.pt", seed=1)


@pytest.fixture(scope="module")
def tuned(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "tuned.nir"
    record = finetune(ckpt, out, cfg=SMALL, progress=False, log=lambda *_: None)
    return out, record


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=NO_GPU)])
def test_qat_forward_is_the_bridge_torch_backend_spike_for_spike(ckpt, device):
    clips = built_in_clips(2)
    with HybridBridge(ckpt, mode="fixed", backend="torch", device=device, calibration=clips) as br:
        want = br.run_clips(clips)
        model = QATModel(br, alpha=2.0)
        logits = model(clips)
        for k, s in model.last_run["spikes"].items():  # integer arithmetic: identical
            mine = s.detach().transpose(0, 1).flatten(0, 1).bool().cpu().numpy()
            assert np.array_equal(mine, np.concatenate([r.spikes[k] for r in want])), k
        # the host's float64 ops may differ in the last bit between calls (MKL/oneDNN kernel choice and
        # alignment), so the logits are compared to 1e-12, far below any decision
        want_logits = np.stack([r.logits for r in want])
        np.testing.assert_allclose(logits.detach().cpu().numpy(), want_logits, rtol=0, atol=1e-12)
        logits.sum().backward()  # gradients reach every trainable conv through spikes, roundings, host
        grads = {k: p.grad for k, p in model.snn.params.items()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        assert sum(int(g.abs().sum() > 0) for g in grads.values()) == len(grads)


def test_finetuned_nir_pins_formats_and_holds_grid_weights(tuned):
    out, record = tuned
    g = nir.read(str(out))
    frac = pinned_frac_bits(g.metadata)
    assert frac and all(isinstance(v, int) for v in frac.values())
    assert pinned_weight_bits(g.metadata) == 8
    meta = json.loads(g.metadata["qat"])
    assert meta["best_epoch"] == record["best_epoch"] and len(meta["epochs"]) == 2
    assert {"val_top1", "val_agreement"} <= set(meta["epochs"][0])
    convs = [n for n in g.nodes.values() if isinstance(n, nir.Conv2d)]
    assert convs
    for n in convs:  # 8-bit mantissa times a power of two
        w = np.asarray(n.weight, dtype=np.float64)
        e = np.ceil(np.log2(np.abs(w).max() / 128.0))
        m = w / 2.0**e
        assert np.array_equal(m, np.rint(m)) and np.abs(m).max() <= 128


def test_lava_fixed_point_runs_the_trained_model_exactly(ckpt, tmp_path, children):
    """Weights moved as training moves them (one layer shrunk so the planner picks a smaller exponent),
    written out, read back by Lava: the same spikes as the trainable model, and its logits."""
    clips = built_in_clips(2)
    with HybridBridge(ckpt, mode="fixed", backend="torch", device="cpu", calibration=clips) as br:
        model = QATModel(br, alpha=2.0)
        gen = torch.Generator().manual_seed(0)
        shrunk = list(model.snn.params)[1]
        exponent = br.spiking.fixed.convs[shrunk].exponent
        with torch.no_grad():
            for i, p in enumerate(model.snn.params.values()):
                p.mul_(0.3) if i == 1 else p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.02)
            ref = model(clips).numpy()
        ref_spikes = {k: s.transpose(0, 1).flatten(0, 1).bool().numpy()
                      for k, s in model.last_run["spikes"].items()}
        write_nir_atomic(deployable_graph(br, model, {"test": True}), tmp_path / "moved.nir")
    before = children()
    with HybridBridge(ckpt, tmp_path / "moved.nir", mode="fixed", backend="cpu") as lava:
        assert lava.pinned_formats and lava.calibration_s < 0.05  # nothing calibrated
        assert lava.spiking.fixed.convs[shrunk].exponent < exponent  # same values, another format
        got = lava.run_clips(clips)
    assert children() == before
    np.testing.assert_allclose(np.stack([g.logits for g in got]), ref, rtol=0, atol=1e-12)
    for k, s in ref_spikes.items():
        assert np.array_equal(np.concatenate([g.spikes[k] for g in got]), s), k
        assert s.any(), k  # not vacuous
    assert np.mean([s.mean() for s in ref_spikes.values()]) > 0.02


def test_cli_refuses_bad_output_and_checkpoint(ckpt, tmp_path, capsys):
    assert main([str(ckpt), "-o", str(tmp_path / "x.h5")]) == 2  # usage errors: exit 2, before any work
    assert "unknown file type '.h5'" in capsys.readouterr().err
    assert main([str(ckpt), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([str(ckpt), "-o", str(tmp_path / "x.nir"), "--threads", "-1"]) == 2
    assert "--threads -1" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "-o", str(tmp_path / "x.nir")]) == 1  # a bad file: exit 1
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "x.nir").exists()


def test_pinned_metadata_errors_are_named():
    assert pinned_frac_bits({}) is None
    assert pinned_frac_bits({PINNED_KEY: np.array(b'{"a": 3}')}) == {"a": 3}
    with pytest.raises(ValueError, match=PINNED_KEY):
        pinned_frac_bits({PINNED_KEY: "[1, 2]"})
    assert pinned_weight_bits({}) is None and pinned_weight_bits({WEIGHT_BITS_KEY: np.int64(3)}) == 3
    for bad in ("3", 9, 1, 2.5, True):
        with pytest.raises(ValueError, match=WEIGHT_BITS_KEY):
            pinned_weight_bits({WEIGHT_BITS_KEY: bad})


def test_a_finetuned_graph_can_be_finetuned_further(ckpt, tuned, tmp_path):
    """What an interrupted run leaves (the best NIR so far) is a valid starting point: formats stay pinned."""
    out, record = tuned
    again = tmp_path / "again.nir"
    rec = finetune(ckpt, again, nir_path=out, cfg=QATConfig(**{**SMALL.__dict__, "epochs": 0}),
                   progress=False, log=lambda *_: None)
    assert rec["epochs"][0]["val_top1"] == record["val_top1"]  # same model, same validation clips
    a, b = nir.read(str(out)), nir.read(str(again))
    assert pinned_frac_bits(a.metadata) == pinned_frac_bits(b.metadata)
    for k, n in a.nodes.items():
        if isinstance(n, nir.Conv2d):
            assert np.array_equal(np.asarray(n.weight), np.asarray(b.nodes[k].weight)), k


@pytest.mark.slow  # a training loop
def test_narrow_weights_stay_on_their_grid(ckpt, tmp_path):
    """--weight-bits 3: every trained conv holds at most 8 distinct mantissas times a power of two."""
    out = tmp_path / "w3.nir"
    cfg = QATConfig(**{**SMALL.__dict__, "weight_bits": 3})
    record = finetune(ckpt, out, cfg=cfg, progress=False, log=lambda *_: None)
    assert record["config"]["weight_bits"] == 3
    for n in nir.read(str(out)).nodes.values():
        if isinstance(n, nir.Conv2d):
            w = np.asarray(n.weight, dtype=np.float64)
            m = w / 2.0 ** np.ceil(np.log2(np.abs(w).max() / 4.0))
            assert np.array_equal(m, np.rint(m)) and np.abs(m).max() <= 4
    assert pinned_weight_bits(nir.read(str(out)).metadata) == 3
    with HybridBridge(ckpt, out, mode="fixed", backend="torch") as br:  # deployed at its own 3 bits
        t = br.resources.totals
        assert br.spiking.weight_bits == 3 and all(q.bits == 3 for q in br.spiking.fixed.convs.values())
        assert br.resources.limits.weight_bits == 3 and t["weight_bits_shared"] == 3 * t["stored_weights"] > 0
    with HybridBridge(ckpt, out, mode="fixed", backend="torch", weight_bits=8) as br:  # unless told otherwise
        assert br.spiking.weight_bits == 8 and br.resources.limits.weight_bits == 8
    again = tmp_path / "w3_again.nir"  # fine-tuning it further keeps its width by default
    more = finetune(ckpt, again, nir_path=out, cfg=QATConfig(**{**SMALL.__dict__, "epochs": 0}),
                    progress=False, log=lambda *_: None)
    assert more["config"]["weight_bits"] == 3 and pinned_weight_bits(nir.read(str(again)).metadata) == 3
