"""Evaluation: clip- and video-level accuracy, top-k, per-class accuracy, confusion matrix.

Video accuracy follows the usual protocol: a video's prediction is argmax of the softmax averaged
over its clips, p_v = (1/|C_v|) sum_{c in C_v} softmax(z_c). Datasets that have several clips per
video expose `video_index` (clip i -> video id); otherwise each clip is its own video.

    python -m respike_neuro.evaluate runs/default/best.pt --split test --out runs/default/eval
    python -m respike_neuro.evaluate runs/default/best.pt --deploy fixed     # Loihi 2 arithmetic

`--deploy float|fixed` evaluates the *deployed* model instead: ANN + cross-attention on the host and
the spiking branch through the bridge (respike_neuro.bridge) on the bit-exact `emulator` backend by
default (or Lava `cpu` / `loihi2`), with fixed-point ranges calibrated on clips of the validation split
(part of the training list, never the test split). The PyTorch model runs on the same clips and the
report adds its metrics and the clip-level top-1 agreement of the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from respike_neuro.cli import (
    ArgumentParser,
    UsageError,
    check_device,
    check_input_file,
    check_number,
    check_output_dir,
    guarded,
)
from respike_neuro.distributed import DistInfo, ShardSampler, all_gather_rows
from respike_neuro.engines import BRIDGE_BACKENDS, ENGINES, MODES
from respike_neuro.fileio import write_text_atomic


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool: label among the k highest logits (k clipped to the number of classes)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def video_scores(
    probs: torch.Tensor, labels: torch.Tensor, video_index: Sequence[int] | torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Average clip probabilities per video -> (video probs (V, K), video labels (V,), video ids (V,))."""
    n = probs.shape[0]
    if video_index is None:
        return probs, labels, torch.arange(n)
    vid = torch.as_tensor(np.asarray(video_index), dtype=torch.long)
    if vid.shape != (n,):
        raise ValueError(f"video_index must have one entry per clip ({n}), got shape {tuple(vid.shape)}")
    ids, inverse = torch.unique(vid, return_inverse=True)
    sums = torch.zeros(len(ids), probs.shape[1], dtype=torch.float64).index_add_(0, inverse, probs.double())
    counts = torch.bincount(inverse, minlength=len(ids)).double()
    v_labels = torch.full((len(ids),), -1, dtype=torch.long)
    v_labels[inverse] = labels
    if not torch.equal(v_labels[inverse], labels):
        bad = int(ids[inverse[v_labels[inverse] != labels][0]])
        raise ValueError(f"video {bad} has clips with different labels; video_index does not match labels")
    return (sums / counts[:, None]).float(), v_labels, ids


def compute_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    video_index: Sequence[int] | torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    topk: tuple[int, ...] = (1, 5),
) -> dict[str, Any]:
    """Clip and video top-k accuracy, per-class accuracy and confusion matrix (video level).

    Confusion rows are true classes, columns predicted classes; per-class accuracy is the
    diagonal over the row sum (None for a class with no videos).
    """
    logits = torch.as_tensor(logits).float()
    labels = torch.as_tensor(labels).long()
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logits must be (N, K) and labels (N,), got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    n, k = logits.shape
    if n == 0:
        raise ValueError("no predictions to evaluate (empty dataset?)")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} names but logits have {k} classes")
    probs = logits.softmax(dim=1)
    v_probs, v_labels, _ = video_scores(probs, labels, video_index)
    out: dict[str, Any] = {"num_clips": n, "num_videos": int(v_labels.numel()), "num_classes": k}
    for kk in topk:
        out[f"clip_top{kk}"] = float(topk_correct(logits, labels, kk).float().mean())
        out[f"video_top{kk}"] = float(topk_correct(v_probs, v_labels, kk).float().mean())
    pred = v_probs.argmax(dim=1)
    confusion = torch.bincount(v_labels * k + pred, minlength=k * k).view(k, k)
    rows = confusion.sum(dim=1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    out["per_class_accuracy"] = {
        names[i]: (float(confusion[i, i] / rows[i]) if rows[i] > 0 else None) for i in range(k)
    }
    out["mean_class_accuracy"] = float((confusion.diag()[rows > 0] / rows[rows > 0]).mean())
    out["confusion"] = confusion.tolist()
    out["class_names"] = names
    return out


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "confusion (video level)",
) -> Path:
    """Row-normalised confusion matrix as a PNG (counts written in the cells when K <= 30)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.float64)
    k = cm.shape[0]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(max(4.0, 0.45 * k + 2), 40.0)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(k)
    fontsize = 8 if k <= 30 else 4
    ax.set_xticks(ticks, labels=list(class_names), rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels=list(class_names), fontsize=fontsize)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    from respike_neuro.fileio import save_pyplot_figure

    save_pyplot_figure(fig, path, dpi=100)
    return Path(path)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    device: torch.device,
    batch_size: int = 16,
    workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    info: DistInfo | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) for every item of `dataset`, in dataset order.

    Under DDP each rank runs its shard (ShardSampler) and the rows are gathered to every rank.
    """
    info = info or DistInfo()
    sampler = ShardSampler(len(dataset), info)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda"
    )
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for clip, label in tqdm(loader, desc=desc, leave=False, disable=not (progress and info.is_main)):
        clip = clip.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits.append(model(clip).float().cpu())
        labels.append(torch.as_tensor(label).long())
    model.train(was_training)
    k = _num_classes(model)
    local_logits = torch.cat(logits) if logits else torch.zeros(0, k)
    local_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    index = torch.as_tensor(sampler.indices, dtype=torch.long)
    rows = torch.cat([local_logits, local_labels[:, None].float()], dim=1).to(device)
    _, rows = all_gather_rows(index.to(device), rows, info)
    return rows[:, :-1], rows[:, -1].long()


def _num_classes(model: torch.nn.Module) -> int:
    inner = getattr(model, "module", model)
    return int(inner.cfg.num_classes)


def evaluate_dataset(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    device: torch.device,
    class_names: Sequence[str] | None = None,
    **predict_kwargs: Any,
) -> dict[str, Any]:
    """predict() + compute_metrics(), with the dataset's video_index when it has one."""
    t0 = time.perf_counter()
    logits, labels = predict(model, dataset, device=device, **predict_kwargs)
    metrics = compute_metrics(
        logits, labels, video_index=getattr(dataset, "video_index", None), class_names=class_names
    )
    metrics["eval_seconds"] = time.perf_counter() - t0
    skipped = skipped_count(dataset)
    if skipped is not None:
        metrics["skipped_videos"] = skipped
    return metrics


def skipped_count(dataset: Dataset) -> int | None:
    """Number of videos a real dataset could not decode/skipped, when it reports one."""
    for name in ("skipped_videos", "skipped"):
        value = getattr(dataset, name, None)
        if value is not None:
            return int(value) if isinstance(value, (int, np.integer)) else len(value)
    return None


def summary_line(metrics: dict[str, Any]) -> str:
    return (
        f"clip top-1 {metrics['clip_top1']:.4f}  top-5 {metrics.get('clip_top5', float('nan')):.4f}  "
        f"video top-1 {metrics['video_top1']:.4f}  ({metrics['num_videos']} videos, "
        f"{metrics['num_clips']} clips)"
    )


# -- CLI ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m respike_neuro.evaluate",
        description="Evaluate a checkpoint: clip/video top-1/top-5, per-class accuracy, confusion matrix "
        "(JSON + PNG). Dataset options default to the ones the checkpoint was trained with.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by respike_neuro.train (best.pt)")
    parser.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    parser.add_argument("--root", default=None, help="dataset root directory (default: the checkpoint's)")
    parser.add_argument("--fold", type=int, default=None, help="split fold (default: the checkpoint's)")
    parser.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="split to evaluate (default: test)"
    )
    parser.add_argument(
        "--num-clips",
        type=int,
        default=None,
        help="clips to evaluate (synthetic data; default: the checkpoint's test_clips)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: <checkpoint dir>/eval_<split>)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    dep = parser.add_argument_group("deployed model (host + Lava)")
    dep.add_argument("--deploy", choices=MODES, default=None,
                     help="evaluate host + spiking branch in this arithmetic instead of PyTorch")
    lava_free_first = tuple(sorted(BRIDGE_BACKENDS, key=lambda n: ENGINES[n].lava))
    dep.add_argument("--backend", choices=lava_free_first, default="emulator",
                     help="spiking branch on the bit-exact numpy emulator (default), the same arithmetic "
                     "batched in torch, Lava CPU or Loihi 2")
    dep.add_argument("--nir", type=Path, default=None, help="NIR export of the checkpoint (default: export)")
    dep.add_argument("--calibration-clips", type=int, default=8,
                     help="fixed point: validation clips that set the ranges (default 8)")

    args = parser.parse_args(argv)
    return guarded(
        lambda: _run(args),
        errors=(ValueError, TypeError, KeyError, OSError, RuntimeError),
        prefix=f"{parser.prog}: error",
    )


def _check_args(args: argparse.Namespace) -> Path:
    """Every option and path, before the model is loaded; returns the output folder."""
    check_input_file(args.checkpoint, "checkpoint")
    if args.nir is not None:
        check_input_file(args.nir, "--nir")
    check_number(args.num_clips, "--num-clips", minimum=1)
    check_number(args.batch_size, "--batch-size", minimum=1)
    check_number(args.workers, "--workers", minimum=0)
    check_number(args.threads, "--threads", minimum=1)
    check_number(args.fold, "--fold", minimum=1)
    check_number(args.calibration_clips, "--calibration-clips", minimum=1)
    check_device(args.device)
    if args.backend != "emulator" and not args.deploy:
        raise UsageError(f"--backend {args.backend} applies to --deploy only")
    name = f"eval_{args.split}" + (f"_{args.deploy}" if args.deploy else "")
    out = args.out or args.checkpoint.parent / name
    check_output_dir(out, "--out", inputs=(args.checkpoint, args.nir))
    for result in ("results.json", "confusion.png"):
        for inp in (args.checkpoint, args.nir):
            if inp is not None and (out / result).resolve() == Path(inp).resolve():
                raise UsageError(f"--out {out}: {result} there would overwrite the input {inp}")
    return out


def _run(args: argparse.Namespace) -> int:
    from respike_neuro.checkpoint import class_names_of, load_model, train_config_of
    from respike_neuro.config import DataConfig
    from respike_neuro.data.registry import build_split
    from respike_neuro.devices import resolve_device

    out = _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, map_location="cpu")
    model.to(device)
    run_cfg = train_config_of(ckpt, args.checkpoint)
    class_names = class_names_of(ckpt, args.checkpoint, model.cfg.num_classes)
    data = DataConfig.from_dict(run_cfg.get("data") or {}, source=f"checkpoint {args.checkpoint}")
    overrides = {"dataset": args.dataset, "root": args.root, "fold": args.fold}
    data = data.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.num_clips is not None:
        data = data.replace(test_clips=args.num_clips, val_clips=args.num_clips, train_clips=args.num_clips)
    dataset = build_split(data, model.cfg, args.split)
    if len(dataset) == 0:
        raise ValueError(f"the {data.dataset} {args.split} split is empty: nothing to evaluate")
    ds_names = getattr(dataset, "class_names", None)
    if ds_names is not None and list(ds_names) != class_names:
        raise ValueError(
            f"dataset {data.dataset!r} classes differ from the checkpoint's "
            f"({len(ds_names)} vs {len(class_names)} classes)"
        )
    predict_kw = dict(batch_size=args.batch_size, workers=args.workers, progress=not args.no_progress)
    if args.deploy:
        metrics = _evaluate_deployed(args, data, model, dataset, class_names, predict_kw)
    else:
        metrics = evaluate_dataset(
            model, dataset, device=device, class_names=class_names, desc=f"eval {args.split}", **predict_kw
        )
    metrics.update(
        checkpoint=str(args.checkpoint), split=args.split, dataset=data.dataset, epoch=ckpt["epoch"]
    )
    write_text_atomic(out / "results.json", json.dumps(metrics, indent=1))
    png = plot_confusion(
        metrics["confusion"],
        class_names,
        out / "confusion.png",
        title=f"{data.dataset} {args.split}: confusion (video level)",
    )
    if args.deploy:
        d = metrics["deployment"]
        print(f"deployed ({d['mode']} on {d['backend']}): {summary_line(metrics)}")
        print(f"PyTorch:                {summary_line(metrics['pytorch'])}")
        print(f"clip top-1 agreement deployed vs PyTorch: {metrics['top1_agreement_with_pytorch']:.4f}")
    else:
        print(summary_line(metrics))
    print(f"results: {out / 'results.json'}\nconfusion matrix: {png}")
    return 0


def _evaluate_deployed(args, data, model, dataset, class_names, predict_kw) -> dict[str, Any]:
    """Metrics of host + spiking branch through the bridge, with the PyTorch ones beside them."""
    from respike_neuro.bridge import DeployedClassifier, HybridBridge
    from respike_neuro.data.registry import build_split

    cal, cal_desc = None, None
    if args.deploy == "fixed":
        if args.calibration_clips < 1:
            raise ValueError(f"--calibration-clips must be >= 1, got {args.calibration_clips}")
        val = build_split(data, model.cfg, "val")
        if len(val) == 0:
            raise ValueError("the validation split is empty: fixed point needs clips to calibrate on")
        n = min(args.calibration_clips, len(val))
        idx = np.unique(np.linspace(0, len(val) - 1, n).round().astype(int))  # spread over the classes
        cal = torch.stack([torch.as_tensor(val[int(i)][0]) for i in idx])
        cal_desc = f"{len(idx)} clips of the {data.dataset} validation split"
    bridge = HybridBridge(  # logits only: no spike recorders in Lava
        args.checkpoint, args.nir, mode=args.deploy, backend=args.backend, calibration=cal,
        record_spikes=False,
    )
    with bridge:
        t0 = time.perf_counter()
        logits, labels = predict(
            DeployedClassifier(bridge), dataset, device=torch.device("cpu"), desc="deployed", **predict_kw
        )
        seconds = time.perf_counter() - t0
    device = next(model.parameters()).device
    ref_logits, _ = predict(model, dataset, device=device, desc="pytorch", **predict_kw)
    videos = getattr(dataset, "video_index", None)
    metrics = compute_metrics(logits, labels, video_index=videos, class_names=class_names)
    reference = compute_metrics(ref_logits, labels, video_index=videos, class_names=class_names)
    metrics.update(
        eval_seconds=seconds,
        deployment={"mode": args.deploy, "backend": args.backend, "nir": str(args.nir or "exported now"),
                    "calibration": cal_desc},
        pytorch={k: reference[k] for k in ("clip_top1", "clip_top5", "video_top1", "video_top5",
                                           "num_videos", "num_clips")},
        top1_agreement_with_pytorch=float((logits.argmax(1) == ref_logits.argmax(1)).float().mean()),
    )
    skipped = skipped_count(dataset)
    if skipped is not None:
        metrics["skipped_videos"] = skipped
    return metrics


if __name__ == "__main__":
    sys.exit(main())
