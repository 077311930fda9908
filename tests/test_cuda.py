"""The CUDA paths: the neuron and the model against the CPU, AMP training, resume, and a GPU-trained
checkpoint going through the CPU-side export. Skipped without a GPU (CI has none); run them on a
GPU machine with `scripts/gpu_check.sh`, which also times training there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from respike_neuro.checkpoint import load_checkpoint, load_model
from respike_neuro.config import small
from respike_neuro.evaluate import main as evaluate_main
from respike_neuro.models.hybrid import build_model
from respike_neuro.models.neuron import lif_sequence
from respike_neuro.train import build_run_config, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def strict_float():
    """No TF32: it rounds matmuls and convs to 10-bit mantissas, so no comparison with the CPU holds."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_fused_lif_matches_cpu_spikes_and_gradient():
    gen = torch.Generator().manual_seed(0)
    current = torch.randn(6, 3, 8, 5, 5, dtype=torch.float64, generator=gen) * 2
    weights = torch.arange(current.numel(), dtype=torch.float64).sin().view_as(current)  # CPU libm, once
    results = []
    for device in ("cpu", "cuda"):
        x = current.to(device, copy=True).requires_grad_()
        spikes = lif_sequence(x, beta=0.25, threshold=4 / 3)
        (spikes * weights.to(device)).sum().backward()
        results.append((spikes.cpu(), x.grad.cpu()))
    (s_cpu, g_cpu), (s_gpu, g_gpu) = results
    assert 0.05 < s_cpu.mean() < 0.95
    assert torch.equal(s_cpu, s_gpu)
    torch.testing.assert_close(g_gpu, g_cpu, rtol=1e-12, atol=1e-12)


def test_model_on_cuda_matches_cpu_in_float64():
    torch.manual_seed(0)
    model = build_model(small()).double().eval()
    clip = torch.randn(2, 8, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        cpu = model(clip)
        gpu = model.to(CUDA)(clip.to(CUDA)).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=1e-9)


def tiny(out: Path, **train) -> dict:
    model = dict(num_classes=12, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=[1, 1, 1, 1])
    return {
        "model": model,
        "data": {"dataset": "synthetic", "train_clips": 16, "val_clips": 8, "test_clips": 8},
        "train": dict(epochs=2, batch_size=4, lr=0.02, out=str(out), progress=False, device="cuda", **train),
    }


def step_losses(out: Path) -> list[float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "step"]


@pytest.mark.parametrize("amp", ["auto", "bf16", "off"])
def test_training_on_cuda_with_amp(tmp_path, amp, recwarn):
    summary = run(build_run_config(tiny(tmp_path, amp=amp, log_every_steps=1), source="test"))
    assert summary["finished"]
    # GradScaler skips fp16 steps with inf gradients; the LR schedule must not advance past them
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]
    losses = step_losses(tmp_path)
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    ckpt = load_checkpoint(tmp_path / "last.pt")  # weights_only=True, mapped to the CPU
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())
    assert bool(ckpt["scaler"]) == (amp == "auto")  # fp16 + GradScaler only for auto on CUDA
    model, _ = load_model(tmp_path / "best.pt")
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 4, 3, 32, 32))
    assert logits.shape == (1, 12) and torch.isfinite(logits).all()


def test_interrupted_cuda_run_resumes_to_the_same_curve(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run(build_run_config(tiny(full, log_every_steps=1), source="test"))
    first = run(build_run_config(tiny(part, log_every_steps=1, max_steps=3), source="test"))
    assert not first["finished"]
    run(build_run_config(tiny(part, log_every_steps=1), source="test"))
    a, b = step_losses(full), step_losses(part)
    assert len(a) == len(b) == 8
    # cuDNN's backward kernels may sum in another order from run to run: close, not bit-equal
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-3, atol=1e-4)


def test_gpu_trained_checkpoint_evaluates_alike_and_exports_on_the_cpu(tmp_path):
    run(build_run_config(tiny(tmp_path, amp="auto"), source="test"))
    results = {}
    for device in ("cuda", "cpu"):
        assert evaluate_main([str(tmp_path / "best.pt"), "--device", device, "--no-progress",
                              "--out", str(tmp_path / device)]) == 0
        results[device] = json.loads((tmp_path / device / "results.json").read_text())
    assert results["cuda"]["confusion"] == results["cpu"]["confusion"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "export/to_nir.py"), str(tmp_path / "best.pt"), "-o",
         str(tmp_path / "model.nir"), "--validate"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "spikes identical" in proc.stdout
