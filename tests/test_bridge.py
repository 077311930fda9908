"""Rung 4/5: host + Lava through HybridBridge vs the PyTorch model, contract checks, failure cleanup."""

from __future__ import annotations

import os
import signal

import nir
import numpy as np
import pytest
import torch

from respike_neuro.bridge import BridgeError, HybridBridge, sha256_of
from respike_neuro.checkpoint import FORMAT_VERSION, save_checkpoint
from respike_neuro.config import small
from respike_neuro.data.synthetic import SyntheticActions
from respike_neuro.export.nir_graph import build_nir_graph
from respike_neuro.models.hybrid import build_model
from respike_neuro.sim.plan import PlanError

TINY = dict(resolution=32, snn_width=8, snn_blocks=(1, 1, 1, 1))


def make_checkpoint(path, seed: int = 0, **changes):
    """A small model that really spikes: BN running stats warmed up on built-in clips (cumulative
    average), non-zero cross-attention output projections (zero-initialised by design)."""
    torch.manual_seed(seed)
    cfg = small(**{**TINY, **changes})
    model = build_model(cfg)
    ds = SyntheticActions(split="train", num_clips=8, frames=cfg.frames, resolution=cfg.resolution, seed=seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    for fusion in model.fusions or []:
        torch.nn.init.normal_(fusion.proj_out.weight, std=0.3)
    model.train()
    with torch.no_grad():
        model(torch.stack([ds[i][0] for i in range(8)]))
    state = dict(
        format_version=FORMAT_VERSION,
        model_config=cfg.to_dict(),
        model=model.eval().state_dict(),
        epoch=0,
        step=0,
        class_names=ds.class_names,
    )
    save_checkpoint(path, state)
    return path


def built_in_clips(n: int, cfg_res: int = 32, frames: int = 8) -> torch.Tensor:
    ds = SyntheticActions(split="test", num_clips=n, frames=frames, resolution=cfg_res)
    return torch.stack([ds[i][0] for i in range(n)])




@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("bridge") / "hybrid.pt")


def _assert_equivalent(results, refs):
    for r, ref in zip(results, refs, strict=True):
        assert r.spikes.keys() == ref["spikes"].keys()
        for k, s in r.spikes.items():
            assert s.shape == ref["spikes"][k].shape, k
            assert np.array_equal(s, ref["spikes"][k]), (
                f"{k}: {int((s != ref['spikes'][k]).sum())} spikes differ"
            )
        np.testing.assert_allclose(r.logits, ref["logits"], rtol=0, atol=1e-4)
        assert r.prediction == ref["prediction"]


def test_float_lava_through_bridge_matches_pytorch_spike_for_spike(ckpt, children):
    before = children()
    clips = built_in_clips(3)
    with HybridBridge(ckpt, mode="float") as br:
        assert br.spiking.input_ports == ["residual_in", "stage2_in", "stage3_in", "stage4_in"]
        res = br.run_clips(clips)
        refs = br.reference(clips)
        single = br.run_clip(clips[1])  # a later call on the same runtime, one clip
        with pytest.raises(BridgeError, match=r"clip has shape \(1, 8, 3, 16, 16\)"):
            br.run_clip(torch.zeros(8, 3, 16, 16))
        bad = clips[0].clone()
        bad[2, 0, 0, 0] = float("nan")
        with pytest.raises(BridgeError, match="NaN"):
            br.run_clip(bad)
    assert children() == before
    _assert_equivalent(res, refs)
    _assert_equivalent([single], [refs[1]])
    for r in res:  # the comparison is not vacuous: every layer spikes, but not everywhere
        assert all(0.01 < v < 0.6 for v in r.spike_rates.values()), r.spike_rates
    # what the host sent back into Lava is the PyTorch model's fused stage input (golden trace)
    from respike_neuro.export.trace import record_snn_io

    trace = record_snn_io(br.model, clips[:1].double().to(br.device))  # the host may run on a GPU
    golden = np.concatenate([s["stage3_in"] for s in trace["segments"]])
    np.testing.assert_allclose(res[0].host_inputs["stage3_in"], golden, rtol=0, atol=1e-9)
    assert len({r.prediction for r in res}) >= 1 and res[0].logits.shape == (12,)
    t, q = res[0].timings, res[0].traffic
    assert t["clips"] == 3 and t["lava_s"] > 0 and all(v > 0 for v in t["host_fuse_s"].values())
    assert t["total_s"] >= t["host_s"] + t["lava_s"] - 1e-6
    # traffic counted from the arrays that crossed equals the resource report's per-step figure
    assert q["ports_in"] == {
        "residual_in": 3 * 32 * 32,
        "stage2_in": 8 * 8 * 8,
        "stage3_in": 16 * 4 * 4,
        "stage4_in": 32 * 2 * 2,
    }
    assert q["loihi2_bytes_in_per_step"] == q["report_bytes_in_per_step"]
    assert q["loihi2_bytes_out_per_step"] == q["report_bytes_out_per_step"]


@pytest.mark.lava  # starts Lava without the children fixture
@pytest.mark.parametrize("variant", ["E8", "snn"])
def test_models_without_host_ports_run_whole_branch_in_lava(tmp_path, variant):
    changes = dict(attention=False) if variant == "E8" else dict(architecture="snn", inputs="res")
    path = make_checkpoint(tmp_path / f"{variant}.pt", seed=1, **changes)
    clips = built_in_clips(2)
    with HybridBridge(path) as br:
        assert br.spiking.input_ports == ["residual_in"] and br.spiking.output_ports == ["stage4_out"]
        res, refs = br.run_clips(clips), br.reference(clips)
    _assert_equivalent(res, refs)
    assert res[0].host_inputs == {} and res[0].traffic["ports_out"] == {"stage4_out": 64 * 1 * 1}
    assert all(v > 0.01 for v in res[0].spike_rates.values())


@pytest.mark.lava  # starts Lava without the children fixture
def test_fixed_point_lava_agrees_with_pytorch(ckpt):
    clips = built_in_clips(6)
    with HybridBridge(ckpt, mode="fixed", calibration_clips=4) as br:
        res, refs = br.run_clips(clips), br.reference(clips)
        assert "given inputs" in br.spiking.fixed.calibration  # calibrated on real clips, not N(0,1)
    q = res[0].quantization
    assert q["bit_exact_with_emulator"] and q["saturated_total"] == 0
    agree = np.mean([r.prediction == ref["prediction"] for r, ref in zip(res, refs, strict=True)])
    # 8-bit weights flip ~1% of spikes per stage and the host loop compounds it (see the report of
    # benchmarks/lava_fixed_agreement.py); a broken format (wrong exponent, shift, reset) garbles layer 1
    assert agree >= 4 / 6, agree
    for k in res[0].spikes:
        same = np.mean([np.mean(r.spikes[k] == ref["spikes"][k]) for r, ref in zip(res, refs, strict=True)])
        assert same > (0.98 if k.startswith("layer1.") else 0.75), (k, same)
    # logits only (evaluation): no spike recorders in Lava, the same integers
    cal = br.spiking.fixed.frac_bits
    with HybridBridge(ckpt, mode="fixed", calibration_clips=4, record_spikes=False) as lean:
        assert lean.spiking.fixed.frac_bits == cal
        again = lean.run_clips(clips)
    assert again[0].spikes == {} and again[0].quantization["bit_exact_with_emulator"]
    assert again[0].timings["lava_processes"] == res[0].timings["lava_processes"] - len(res[0].spikes)
    for a, r in zip(again, res, strict=True):  # the host's float64 may differ in the last bit between runs
        np.testing.assert_allclose(a.logits, r.logits, rtol=0, atol=1e-12)


def test_nir_must_belong_to_the_checkpoint(ckpt, tmp_path, children):
    other = make_checkpoint(tmp_path / "other.pt", seed=5)
    model = build_model(small(**TINY))
    wrong_sha = tmp_path / "other.nir"
    nir.write(wrong_sha, build_nir_graph(model, checkpoint_sha256=sha256_of(other)))
    with pytest.raises(BridgeError, match="exported from a different checkpoint"):
        HybridBridge(ckpt, wrong_sha)
    no_sha = tmp_path / "nosha.nir"
    nir.write(no_sha, build_nir_graph(model))
    with pytest.raises(BridgeError, match="records no checkpoint hash"):
        HybridBridge(ckpt, no_sha)
    wrong_cfg = tmp_path / "cfg.nir"  # right hash, but the graph of another architecture
    nir.write(
        wrong_cfg,
        build_nir_graph(build_model(small(**{**TINY, "snn_width": 16})), checkpoint_sha256=sha256_of(ckpt)),
    )
    with pytest.raises(BridgeError, match=r"model config differs in snn_width \(16 vs 8\)"):
        HybridBridge(ckpt, wrong_cfg)
    text = tmp_path / "notes.nir"
    text.write_text("not a graph")
    with pytest.raises(PlanError, match="not a readable NIR file"):
        HybridBridge(ckpt, text)
    g = build_nir_graph(model, checkpoint_sha256=sha256_of(ckpt))  # an unsupported node type
    g.nodes["stage1_delay"] = nir.Delay(delay=np.ones((8, 8, 8)))
    g.edges.append(("layer1.0.out", "stage1_delay"))
    g.nodes["delayed_out"] = nir.Output(output_type={"output": np.array([8, 8, 8])})
    g.edges.append(("stage1_delay", "delayed_out"))
    unsupported = tmp_path / "delay.nir"
    nir.write(unsupported, g)
    with pytest.raises(PlanError, match="Delay"):
        HybridBridge(ckpt, unsupported)
    ann = make_checkpoint(tmp_path / "ann.pt", architecture="ann", inputs="key")
    with pytest.raises(BridgeError, match="no spiking branch"):
        HybridBridge(ann)
    assert children() == []


class _Raises(torch.nn.Module):
    """A host fusion module that fails at its second call (fault injection into the host part)."""

    def __init__(self, action, children):
        super().__init__()
        self.calls, self.action, self.children = 0, action, children

    def forward(self, x, context):
        self.calls += 1
        if self.calls == 2:
            self.lava_children = len(self.children())  # Lava's processes are running now
            self.action()
        return x


def _interrupt():
    os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered while the host part runs


def _fail():
    raise RuntimeError("host fusion failed")


@pytest.mark.parametrize("action,exc", [(_fail, RuntimeError), (_interrupt, KeyboardInterrupt)])
def test_host_failure_or_ctrl_c_stops_lava(ckpt, action, exc, children):
    before = children()
    br = HybridBridge(ckpt)
    br.model.fusions[1] = faulty = _Raises(action, children)
    with pytest.raises(exc):
        br.run_clip(built_in_clips(1)[0])
    assert faulty.lava_children > len(before) + 10
    assert children() == before
    with pytest.raises(RuntimeError, match="stopped after an earlier failure"):
        br.run_clip(built_in_clips(1)[0])
    br.close()
    assert children() == before


def test_stuck_lava_step_times_out_and_stops_lava(ckpt, children):
    before = children()
    with HybridBridge(ckpt, step_timeout=1e-6) as br, pytest.raises(TimeoutError, match="within"):
        br.run_clip(built_in_clips(1)[0])
    assert children() == before


def test_fixed_agreement_benchmark_reports_margins(ckpt, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "lava_fixed_agreement.py"
    spec = importlib.util.spec_from_file_location("lava_fixed_agreement", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = [str(ckpt), "--clips", "5", "--batch", "5", "--calibration-clips", "2", "--engine", "emulator"]
    assert bench.main([*args, "--quiet", "--floor-draws", "1"]) == 0
    out = capsys.readouterr().out
    assert "engine emulator, 8-bit weights" in out and "by PyTorch's top-1 margin" in out
    assert "PyTorch vs itself with +-LSB/2 8-bit weight noise" in out
    assert "only its thresholds moved to the deployed ones" in out
    r = bench.measure(ckpt, clips=5, batch=5, calibration_clips=2, engine="emulator", progress=False)
    assert sum(b["clips"] for b in r["agreement_by_margin"]) == 5
    assert 0 < r["max_relative_threshold_error"] < 1e-3
    assert 0 <= r["pytorch_deployed_thresholds_agreement"] <= 1
    assert r["saturated_values"] == 0 and not r["lava_bit_exact_with_emulator"]  # not checked: no Lava
    assert bench.main([*args, "--weight-bits", "12", "--engine", "lava", "--quiet"]) == 1
    assert "emulator backend only" in capsys.readouterr().err


@pytest.mark.slow  # subprocesses that import Lava
@pytest.mark.parametrize(
    ("before", "expect"),
    [("mp.get_start_method()", "fork"), ("mp.set_start_method('spawn')", "needs the 'fork'")],
)
def test_lava_import_survives_a_fixed_start_method(before, expect):
    """Lava's own set_start_method('fork') raises once the method is fixed; importing the bridge must not."""
    import subprocess
    import sys

    code = f"import multiprocessing as mp; {before}; import respike_neuro.bridge; "
    code += "print(mp.get_start_method())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert expect in (r.stdout if expect == "fork" else r.stderr), r.stderr[-500:]
    assert (r.returncode == 0) == (expect == "fork")


@pytest.mark.parametrize("mode", ["fixed", "float"])
def test_torch_backend_equals_the_emulator_batched(ckpt, mode, children):
    before = children()
    clips = built_in_clips(4)
    kw = dict(mode=mode, calibration_clips=4)
    with HybridBridge(ckpt, backend="emulator", **kw) as em, HybridBridge(ckpt, backend="torch", **kw) as tb:
        assert tb.torch_emulator is not None and em.torch_emulator is None
        ref, got = em.run_clips(clips), tb.run_clips(clips)
        golden = tb.reference(clips)
    assert children() == before  # neither backend starts a process
    for r, g in zip(ref, got, strict=True):
        for k, s in r.spikes.items():  # every layer, every timestep
            assert np.array_equal(g.spikes[k], s), f"{k}: {int((g.spikes[k] != s).sum())} spikes differ"
        for k, v in r.outputs.items():
            if mode == "fixed":  # integers scaled by powers of two: exact
                assert np.array_equal(g.outputs[k], v), k
            else:
                np.testing.assert_allclose(g.outputs[k], v, rtol=0, atol=1e-12)
        for k, v in r.host_inputs.items():
            np.testing.assert_allclose(g.host_inputs[k], v, rtol=0, atol=1e-12)
        np.testing.assert_allclose(g.logits, r.logits, rtol=0, atol=1e-12)
        assert g.timings["lava_processes"] == 0 and g.timings["host_fuse_s"][2] > 0
    if mode == "fixed":
        assert got[0].quantization["engine"] == "torch"
        assert got[0].quantization["saturation"] == ref[0].quantization["saturation"]
    else:
        _assert_equivalent(got, golden)
    assert np.mean([r.spike_rates[k] for r in got for k in r.spike_rates]) > 0.01  # not vacuous


def test_unknown_backend_is_refused_before_any_work(ckpt):
    with pytest.raises(ValueError, match=r"backend must be one of \('cpu', 'loihi2', 'emulator', 'torch'\)"):
        HybridBridge(ckpt, backend="gpu")
