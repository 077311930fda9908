"""Checkpoint files: atomic round trip with weights_only, clear errors for every broken file."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from respike_neuro.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_state_dict,
    load_checkpoint,
    load_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from respike_neuro.config import ModelConfig
from respike_neuro.models.hybrid import build_model

TINY = dict(num_classes=5, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=(1, 1, 1, 1))


def _state(cfg: ModelConfig, model: torch.nn.Module) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, cfg.frames, 3, cfg.resolution, cfg.resolution)).sum().backward()
    opt.step()
    return dict(
        format_version=FORMAT_VERSION,
        model_config=cfg.to_dict(),
        train_config={"train": {"lr": 0.1}},
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        epoch=3,
        step=12,
        epoch_step=0,
        best_metric=0.5,
        rng=rng_state(),
        class_names=[f"c{i}" for i in range(cfg.num_classes)],
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, _state(cfg, model))
    return path, cfg, model


def test_round_trip_weights_only(saved):
    path, cfg, model = saved
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    state = torch.load(path, weights_only=True)  # plain types only: loads with no pickled code
    assert state["epoch"] == 3 and state["class_names"][-1] == "c4"
    loaded, ckpt = load_model(path)
    assert ckpt["model_config"] == cfg.to_dict()
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert not loaded.training
    opt = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(ckpt["optimizer"])  # optimizer state survives the trip too
    assert len(opt.state) == len(list(loaded.parameters()))


def test_overwrite_is_atomic_replace(saved, tmp_path):
    path, cfg, model = saved
    target = tmp_path / "best.pt"
    save_checkpoint(target, torch.load(path, weights_only=True) | {"epoch": 1})
    save_checkpoint(target, torch.load(path, weights_only=True) | {"epoch": 2})
    assert load_checkpoint(target)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_truncated_file(saved, tmp_path):
    path = saved[0]
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt.*not a readable torch file"):
        load_checkpoint(bad)


def test_garbage_missing_and_directory(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="garbage.pt.*not a readable torch file"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_missing_keys_and_non_dict(tmp_path):
    partial = tmp_path / "partial.pt"
    torch.save({"format_version": 1, "model": {}}, partial)
    with pytest.raises(CheckpointError, match=r"lacks key\(s\) \['model_config', 'epoch'"):
        load_checkpoint(partial)
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tensor_only)
    with pytest.raises(ValueError, match="required key"):
        save_checkpoint(tmp_path / "x.pt", {"model": {}})


class _Payload:  # a pickled object: weights_only loading must refuse it
    pass


def test_pickled_objects_are_refused(saved, tmp_path):
    path, cfg, model = saved
    evil = tmp_path / "evil.pt"
    torch.save(torch.load(path, weights_only=True) | {"extra": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(evil)


def test_other_architecture_names_mismatching_keys(saved, tmp_path):
    path, cfg, _ = saved
    state = torch.load(path, weights_only=True)
    # weights of an ANN-only model declared as the hybrid: snn/fusion keys missing, head shape differs
    ann_cfg = cfg.replace(architecture="ann", inputs="all")
    state["model"] = build_model(ann_cfg).state_dict()
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(
        CheckpointError, match=r"other.pt does not fit.*missing: fusions\..*shape mismatch: head"
    ):
        load_model(other)
    wider = build_model(cfg.replace(snn_width=16))
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch: fusions\.0\.norm\.bias: checkpoint \(8,\) vs model \(16,\).*\d+ in all",
    ):
        check_state_dict(wider, state_dict_of(path))


def state_dict_of(path):
    return torch.load(path, weights_only=True)["model"]


def test_newer_format_version_is_rejected(saved, tmp_path):
    state = torch.load(saved[0], weights_only=True)
    state["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(state, newer)
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(newer)


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    set_rng_state(torch.load(path, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
