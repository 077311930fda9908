"""DDP on CPU (gloo, 2 processes via torchrun) against one process, plus the sampler helpers.

BatchNorm: each DDP rank normalises with its own batch's statistics (SyncBatchNorm is CUDA-only
in torch), so a 2-rank run with per-rank batch b is NOT one process with batch 2b. It IS one
process with batch 2b and accum_steps=2: micro-batch m = batch[m::2] holds exactly rank m's
samples (DistributedSampler hands rank r perm[r::2]), is normalised on its own, and the
accumulated gradient (1/2)(g_0 + g_1) is DDP's all-reduced mean. So the loss curve and the weights
must agree to float rounding; with one thread in every process (the same conv kernels) they agree
bit for bit here. The tolerance stays tight anyway: spiking thresholds turn any rounding difference
into flipped spikes within a few steps, so only a run that really is equivalent passes.
(Running BN statistics differ: DDP keeps rank 0's.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from respike_neuro.checkpoint import load_checkpoint
from respike_neuro.distributed import DistInfo, ShardSampler, TrainSampler, all_gather_rows
from respike_neuro.train import build_run_config, run

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train_test_helpers", ROOT / "tests" / "test_train.py")
train_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_helpers)


def _config(out: Path, **train) -> dict:
    """test_train's tiny run with 12 training clips (3 global batches of 4 for 2 ranks)."""
    cfg = train_helpers.tiny(out, **{"lr": 0.01, "eval_batch_size": 2, **train})
    cfg["data"].update(train_clips=12, test_clips=6)
    return cfg


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # two gloo ranks training: ~15-60 s
def test_two_rank_gloo_matches_single_process_with_accumulation(tmp_path):
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(ddp_out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "respike_neuro.train",
            "--config",
            str(cfg_path),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best checkpoint:") == 1  # rank 0 alone reports
    threads = torch.get_num_threads()
    try:  # one thread like each rank: the same conv kernels, so the same rounding
        run(build_run_config(_config(single_out, accum_steps=2, threads=1), source="test"))
    finally:
        torch.set_num_threads(threads)

    ddp, single = _records(ddp_out), _records(single_out)
    assert (
        [r["kind"] for r in ddp] == [r["kind"] for r in single] == ["step", "step", "step", "epoch", "test"]
    )
    for a, b in zip(ddp, single):
        if a["kind"] == "step":
            assert abs(a["loss"] - b["loss"]) < 1e-6 and a["train_acc"] == b["train_acc"]
    weights_ddp = load_checkpoint(ddp_out / "last.pt")["model"]
    weights_single = load_checkpoint(single_out / "last.pt")["model"]
    for name, w in weights_single.items():
        if "running_" in name or "num_batches" in name:
            continue  # BN running statistics: rank 0's under DDP, both micro-batches' here
        torch.testing.assert_close(weights_ddp[name], w, rtol=1e-6, atol=1e-7, msg=name)
    # evaluation was sharded over the ranks and gathered: every test clip counted exactly once
    test = json.loads((ddp_out / "test_results.json").read_text())
    assert test["num_clips"] == 6 and sum(map(sum, test["confusion"])) == 6


def test_train_sampler_is_seeded_per_epoch_and_skips():
    data = list(range(10))
    one = TrainSampler(data, DistInfo(), seed=3)
    one.set_epoch(0)
    epoch0 = list(one)
    one.set_epoch(1)
    assert sorted(epoch0) == data and list(one) != epoch0
    one.set_epoch(0)
    one.skip_batches(2, 3)
    assert list(one) == epoch0[6:]
    assert list(one) == epoch0  # the skip applies to one iteration only
    ranks = [TrainSampler(data, DistInfo(rank=r, world_size=2), seed=3) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(0)
    # rank r takes every other sample of the same permutation: the global batch is unchanged
    assert list(ranks[0]) == epoch0[0::2] and list(ranks[1]) == epoch0[1::2]


def test_shard_sampler_and_gather_single_process():
    assert list(ShardSampler(7, DistInfo(rank=1, world_size=3))) == [1, 4]
    index = torch.tensor([3, 1, 2, 1])
    rows = torch.tensor([[3.0], [1.0], [2.0], [1.0]])
    got_index, got_rows = all_gather_rows(index, rows, DistInfo())
    assert got_index.tolist() == [1, 2, 3] and got_rows.flatten().tolist() == [1.0, 2.0, 3.0]
