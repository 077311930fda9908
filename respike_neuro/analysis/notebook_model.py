"""The small trained model the analysis notebooks share.

`notebook_model()` returns a trained hybrid and its config on built-in data:

* `RESPIKE_CHECKPOINT` set: that checkpoint (a `respike_neuro.train` file) is loaded; asking for
  another stride re-evaluates the SAME weights at that stride (the weights do not depend on s,
  only how the clip is cut into segments), and `source` says so.
* otherwise a tiny hybrid is trained with the project's own `respike_neuro.train.run` (well under
  a minute on 2 CPU cores) and cached under `RESPIKE_CACHE_DIR` (default: a folder in the system
  temp dir), keyed by a hash of the whole run config, so the four notebooks (and every stride of
  a sweep) train each configuration once.

Why a narrower net than `config.small()`: one SNN block per stage and width 8 train about 10x
faster while keeping the 64x64 grid, so the last fusion stage still has 2x2 tokens and stage 1
8x8 (what the attention notebook shows). Why 4 classes (2 scenes x 2 opposite motions): with a
few hundred clips the accuracy is then above chance in seconds, and telling left from right
still needs the residual (SNN) branch, since key frames alone cannot separate opposite motions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from respike_neuro.config import ModelConfig, small

CHECKPOINT_ENV = "RESPIKE_CHECKPOINT"
CACHE_ENV = "RESPIKE_CACHE_DIR"
FIGURES_ENV = "RESPIKE_FIGURES"
CACHE_VERSION = 2  # bump when the recipe below changes meaning (2: bright actors, 2026-11-28)

SCENES = ("pool", "court")
MOTIONS = ("left", "right")
MODEL = dict(snn_width=8, snn_blocks=(1, 1, 1, 1), num_classes=len(SCENES) * len(MOTIONS))
DATA = dict(
    dataset="synthetic",
    train_clips=128,
    val_clips=32,
    test_clips=48,
    seed=0,
    workers=0,
    cache=True,
    options={"scenes": list(SCENES), "motions": list(MOTIONS)},
)
TRAIN = dict(
    epochs=6,
    batch_size=16,
    lr=0.02,
    warmup_epochs=0.5,
    schedule="cosine",
    amp="off",
    seed=0,
    device="cpu",
    threads=1,  # one thread: immune to the 10x OpenMP slow-down when other jobs share the 2 cores
    resume="never",
    progress=False,
    log_every_steps=0,
)


@dataclass
class NotebookModel:
    """A trained model in eval mode and what the notebooks need around it.

    checkpoint: the file the weights came from (the bridge and exporters read files);
    data: keyword arguments of `SyntheticActions` for this model (split/num_clips excluded);
    test_accuracy: top-1 on the built-in test split when known (None otherwise);
    source: one line saying where the model came from (trained here, cached, or RESPIKE_CHECKPOINT).
    """

    model: torch.nn.Module
    cfg: ModelConfig
    checkpoint: Path
    class_names: list[str]
    data: dict[str, Any]
    source: str
    test_accuracy: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def dataset(self, split: str = "test", num_clips: int = 8, *, raw: bool = False):
        """Built-in clips this model was trained on (normalised, or in [0, 1] with raw=True)."""
        from respike_neuro.data.synthetic import SyntheticActions

        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive int, got {num_clips!r}")
        return SyntheticActions(split=split, num_clips=num_clips, raw=raw, **self.data)

    def clips(self, split: str = "test", num_clips: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """(clips (B, T, 3, H, W) normalised, labels (B,)) from the built-in data."""
        ds = self.dataset(split, num_clips)
        items = [ds[i] for i in range(num_clips)]
        return torch.stack([c for c, _ in items]), torch.tensor([y for _, y in items])


def figures_dir(default: str | os.PathLike = "figures") -> Path:
    """Where notebooks save figures: $RESPIKE_FIGURES, else `default` (relative to the cwd); created."""
    path = Path(os.environ.get(FIGURES_ENV) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """$RESPIKE_CACHE_DIR, else <system temp>/respike-neuro-notebooks."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "respike-neuro-notebooks")


def run_config_dict(stride: int = 4) -> dict[str, Any]:
    """The notebook training recipe at stride `stride` as a `train.build_run_config` mapping."""
    cfg = small(stride=stride, **MODEL)  # validates the stride against the clip length
    return {"model": cfg.to_dict(), "data": json.loads(json.dumps(DATA)), "train": dict(TRAIN)}


def _key(values: dict[str, Any]) -> str:
    text = json.dumps({"version": CACHE_VERSION, **values}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_stride(stride: Any) -> int:
    if isinstance(stride, bool) or not isinstance(stride, int):
        raise TypeError(f"stride must be an int, got {type(stride).__name__}")
    if stride < 2:
        raise ValueError(f"stride must be >= 2 (a segment needs at least one residual frame), got {stride}")
    return stride


def notebook_model(stride: int = 4, *, quiet: bool = True) -> NotebookModel:
    """A small trained hybrid at stride `stride` (see the module docstring for where it comes from)."""
    stride = _check_stride(stride)
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return _from_checkpoint(Path(env), stride)
    return _trained(stride, quiet=quiet)


def _from_checkpoint(path: Path, stride: int) -> NotebookModel:
    from respike_neuro.checkpoint import load_model
    from respike_neuro.data.synthetic import trained_distribution

    if not path.is_file():
        raise FileNotFoundError(f"{CHECKPOINT_ENV}={path}: no such checkpoint file")
    model, state = load_model(path)
    trained_cfg = model.cfg
    if not trained_cfg.has_snn:
        raise ValueError(
            f"{CHECKPOINT_ENV}={path}: architecture {trained_cfg.architecture!r} has no SNN branch"
        )
    if trained_cfg.frames % stride or (stride < 2):
        raise ValueError(
            f"stride {stride} does not divide the checkpoint's clip length {trained_cfg.frames} ({path})"
        )
    data_cfg = dict((state.get("train_config") or {}).get("data") or {})
    if data_cfg.get("dataset", "synthetic") != "synthetic":
        raise ValueError(
            f"{CHECKPOINT_ENV}={path} was trained on {data_cfg.get('dataset')!r}; the notebooks evaluate on "
            "the built-in synthetic data only"
        )
    data = dict(frames=trained_cfg.frames, resolution=trained_cfg.resolution, stride=stride,
                **trained_distribution(state.get("train_config")))
    source = f"{CHECKPOINT_ENV}={path} (trained at s={trained_cfg.stride})"
    if stride != trained_cfg.stride:
        cfg = trained_cfg.replace(stride=stride)
        weights = model.state_dict()
        from respike_neuro.models.hybrid import build_model

        model = build_model(cfg.replace(ann_weights=None))
        model.load_state_dict(weights)
        model.eval()
        source += f", RE-EVALUATED at s={stride} without retraining"
    nb = NotebookModel(model, model.cfg, path, list(state.get("class_names") or []), data, source)
    _check_classes(nb)
    return nb


def _trained(stride: int, *, quiet: bool) -> NotebookModel:
    from respike_neuro.checkpoint import load_model
    from respike_neuro.config import build_run_config
    from respike_neuro.train import run

    values = run_config_dict(stride)
    out = cache_dir() / f"s{stride}-{_key(values)}"
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second notebook asking for the same model waits, then reuses it
        cached = done.is_file()
        if not cached:
            values["train"]["out"] = str(out)
            cfg = build_run_config(values, source="notebook recipe")
            sink = open(os.devnull, "w") if quiet else contextlib.nullcontext(sys.stderr)
            with sink as err, contextlib.redirect_stderr(err):
                summary = run(cfg)
            test = summary.get("test") or {}
            record = {
                "best_val_acc": summary["best_val_acc"],
                "test_acc": test.get("video_top1"),
                "epochs": summary["epoch"],
                "steps": summary["step"],
            }
            done.write_text(json.dumps(record))
        record = json.loads(done.read_text())
    model, state = load_model(out / "best.pt")
    d = values["data"]
    data = dict(frames=model.cfg.frames, resolution=model.cfg.resolution, seed=d["seed"], stride=stride,
                **d["options"])
    how = "cached" if cached else "trained now"
    source = (f"tiny hybrid {how} in {out} ({record['epochs']} epochs, {d['train_clips']} built-in clips, "
              f"best val top-1 {record['best_val_acc']:.3f})")
    nb = NotebookModel(model, model.cfg, out / "best.pt", list(state["class_names"]), data, source,
                       test_accuracy=record["test_acc"], info=record)
    _check_classes(nb)
    return nb


def _check_classes(nb: NotebookModel) -> None:
    n = len(nb.dataset("test", 1).class_names)
    if n != nb.cfg.num_classes:
        raise ValueError(
            f"{nb.checkpoint}: the model has {nb.cfg.num_classes} classes but its built-in data has {n}"
        )


def evaluate_accuracy(nb: NotebookModel, num_clips: int = 48, batch_size: int = 16) -> float:
    """Top-1 of `nb.model` on the first `num_clips` built-in test clips (at the model's own stride)."""
    ds = nb.dataset("test", num_clips)
    correct = 0
    with torch.no_grad():
        for start in range(0, num_clips, batch_size):
            idx = range(start, min(num_clips, start + batch_size))
            x = torch.stack([ds[i][0] for i in idx])
            y = torch.tensor([ds[i][1] for i in idx])
            correct += int((nb.model(x).argmax(1) == y).sum())
    return correct / num_clips


def untrained_like(cfg: ModelConfig, clips: torch.Tensor, *, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model of `cfg` whose BatchNorm statistics are calibrated on `clips`.

    Why calibrate: at its initial statistics (mean 0, var 1) BN leaves the random convs' small
    outputs far below threshold and the branch is silent, which says nothing about the network;
    with running statistics from real clips (cumulative average of one train-mode pass, no
    gradient, no weight update) the comparison with the trained model is about the weights only.
    """
    from respike_neuro.models.hybrid import build_model

    if not isinstance(clips, torch.Tensor) or clips.dim() != 5:
        shape = getattr(clips, "shape", type(clips))
        raise ValueError(f"clips must be a (B, T, 3, H, W) tensor, got {shape}")
    torch.manual_seed(seed)
    model = build_model(cfg.replace(ann_weights=None))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(clips)
    return model.eval()
