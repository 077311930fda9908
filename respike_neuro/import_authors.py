"""Bring a model trained with the authors' ReSpike code into this pipeline.

The authors' `train_fusion.py` / `train_kinetics.py` save `CrossAttenFusion.state_dict()` (e.g.
`hmdb51-resnet50-4-0.0001-pretrained.pth`): weights only, no configuration. Every tensor has one
counterpart in this project's ReSpike; `module_map` below is that correspondence, module by
module, in one place (tensor names below a module are the same on both sides), and every import
checks it one-to-one in both directions with every shape.
What the file does not store is inferred from tensor shapes (ANN backbone, classes, SNN width and
blocks) or taken from the command line (stride, frames, resolution: defaults are the published
commands', and a stride in the authors' file name is used when none is given).

    python -m respike_neuro.import_authors hmdb51-resnet50-4-0.0001-pretrained.pth -o r50.pt

The result is an ordinary checkpoint: `export/to_nir.py`, `evaluate`, `sim/hybrid_demo.py` take it.
Only the authors' `--downsample` network (the one both published commands train) exists here;
their default network skips the stage-1 fusion and fuses stage 2 unpooled, which this model
cannot express, and its file is indistinguishable by shape, so `--downsample 0` refuses it.
Same weights give the authors' eval and train-mode logits and gradients:
tests/test_import_authors.py, and `benchmarks/authors_equivalence.py` against their own code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import torch

from respike_neuro.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_state_dict,
    is_authors_state_dict,
    read_torch_file,
    save_checkpoint,
)
from respike_neuro.cli import ArgumentParser, check_input_file, check_number, check_output_file, guarded
from respike_neuro.config import ModelConfig

# published commands: train_fusion.py -T 16 --stride 4 --downsample (224^2 crops); train_kinetics.py
# uses --stride 2, which the authors' file name records (<dset>-<model>-<stride>-<lr>-pretrained.pth)
PUBLISHED = {"frames": 16, "stride": 4, "resolution": 224}
AUTHORS_FILE_NAME = re.compile(
    r"(?P<dset>[^-]+)-(?P<model>resnet\d+)-(?P<stride>\d+)-(?P<lr>.+)-pretrained\.pth"
)

# torchvision's ImageNet ResNets by (block kind, blocks per stage)
_RESNETS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
# the cross-attention's submodules: authors' SpatialTransformer name -> ours (models/fusion.py)
_FUSION = {
    "norm": "norm",
    "proj_in": "proj_in",
    "proj_out": "proj_out",
    **{f"transformer_blocks.0.attn1.to_{x}": f"block.self_attn.to_{x}" for x in "qkv"},
    "transformer_blocks.0.attn1.to_out.0": "block.self_attn.to_out",
    **{f"transformer_blocks.0.attn2.to_{x}": f"block.cross_attn.to_{x}" for x in "qkv"},
    "transformer_blocks.0.attn2.to_out.0": "block.cross_attn.to_out",
    "transformer_blocks.0.ff.net.0.proj": "block.ff.proj",
    "transformer_blocks.0.ff.net.2": "block.ff.out",
    **{f"transformer_blocks.0.norm{i}": f"block.norm{i}" for i in (1, 2, 3)},
}
# one MS-ResNet block: authors' BasicBlock -> ours (models/snn.py, ConvBN = Sequential(conv, bn))
_BLOCK = {
    "conv1": "conv1.0",
    "bn1": "conv1.1",
    "conv2": "conv2.0",
    "bn2": "conv2.1",
    "shortcut.1": "shortcut.1.0",
    "shortcut.2": "shortcut.1.1",
}


def module_map(snn_blocks: tuple[int, ...]) -> dict[str, str]:
    """Authors' module path -> this project's, for a network with `snn_blocks` blocks per stage."""
    table = {"ann_layer0.0": "ann.stem.0", "ann_layer0.1": "ann.stem.1"}
    table |= {f"ann_layer{k}": f"ann.stages.{k - 1}" for k in range(1, 5)}  # torchvision names inside
    table |= {"snn_backbone.conv1": "snn.stem.0", "snn_backbone.bn1": "snn.stem.1", "fc": "head"}
    for k, blocks in enumerate(snn_blocks, start=1):
        for j in range(blocks):
            table |= {
                f"snn_backbone.layer{k}.{j}.{a}": f"snn.stages.{k - 1}.{j}.{b}" for a, b in _BLOCK.items()
            }
        table |= {f"snn_backbone.fusion{k}.{a}": f"fusions.{k - 1}.{b}" for a, b in _FUSION.items()}
    if len(set(table.values())) != len(table):
        raise AssertionError("module_map is not one-to-one")  # a bug in the table above, never input
    return table


def _rename(key: str, table: dict[str, str]) -> str | None:
    """`key` with its longest mapped module prefix replaced (None: no prefix is mapped)."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in table:
            return ".".join([table[prefix], *parts[cut:]])
    return None


def infer_config(state: dict[str, torch.Tensor], **run: int) -> ModelConfig:
    """The project's ModelConfig of an authors' state_dict; `run` holds frames/stride/resolution."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"missing {key!r}: not a complete ReSpike state_dict")
        return tuple(state[key].shape)

    def blocks(prefix: str) -> tuple[int, ...]:
        counts = []
        for k in range(1, 5):
            found = {int(m[1]) for key in state if (m := re.match(rf"{prefix}{k}\.(\d+)\.", key))}
            if not found:
                raise CheckpointError(
                    f"missing {prefix}{k}: not a complete ReSpike state_dict (partial file?)"
                )
            if found != set(range(len(found))):
                raise CheckpointError(f"{prefix}{k}: blocks {sorted(found)} are not 0..n-1")
            counts.append(len(found))
        return tuple(counts)

    kind = "bottleneck" if "ann_layer1.0.conv3.weight" in state else "basic"
    ann_blocks = blocks("ann_layer")
    ann = _RESNETS.get((kind, ann_blocks))
    if ann is None:
        known = sorted(set(_RESNETS.values()))
        raise CheckpointError(f"ANN with {kind} blocks {ann_blocks} is none of {known}")
    num_classes = shape("fc.weight")[0]
    width = shape("snn_backbone.conv1.weight")[0]
    in_channels = shape("snn_backbone.conv1.weight")[1]
    if in_channels != 3:
        raise CheckpointError(f"snn_backbone.conv1 takes {in_channels} channels; ReSpike's residuals have 3")
    return ModelConfig(
        num_classes=num_classes,
        ann=ann,
        snn_width=width,
        snn_blocks=blocks("snn_backbone.layer"),
        fusion_pool=(4, 2, 1, 1),  # their downsample network: AvgPool(4)/(2) at stages 1/2 at any size
        attention_head_dim=32,
        frames=run["frames"],
        stride=run["stride"],
        resolution=run["resolution"],
    )


def convert(state: dict[str, Any], *, frames: int, stride: int, resolution: int) -> tuple[ModelConfig, dict]:
    """An authors' state_dict -> (ModelConfig, this project's state_dict), every key and shape checked."""
    from respike_neuro.models.hybrid import build_model

    if not is_authors_state_dict(state):
        raise CheckpointError(
            "not a state_dict saved by the authors' ReSpike code (no ann_layer0/snn_backbone keys)"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{len(bad)} entries are not tensors, e.g. {bad[0]!r}")
    prefixed = [k.startswith("module.") for k in state]
    if any(prefixed) and not all(prefixed):
        raise CheckpointError("some keys carry DataParallel's 'module.' prefix and some do not")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        cfg = infer_config(state, frames=frames, stride=stride, resolution=resolution)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    table = module_map(cfg.snn_blocks)
    unknown = sorted(k for k in state if _rename(k, table) is None)
    if unknown:
        shown = ", ".join(unknown[:6]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 6 else "")
        raise CheckpointError(f"keys the authors' CrossAttenFusion does not have: {shown}")
    ours = {_rename(k, table): v for k, v in state.items()}
    inverse = {v: k for k, v in table.items()}
    assert all(_rename(p, inverse) == a for a, p in zip(state, ours)), "module_map is not invertible"
    model = build_model(cfg)
    check_state_dict(model, ours, source="authors' state_dict")
    return cfg, ours


def _load_authors_file(path: Path) -> dict[str, Any]:
    state = read_torch_file(path, what="authors' file")
    if isinstance(state, dict) and "format_version" in state and "model" in state:
        raise CheckpointError(f"{path} is already a respike_neuro checkpoint: use it as it is")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return state


def import_authors(
    src: Path,
    out: Path,
    *,
    frames: int | None = None,
    stride: int | None = None,
    resolution: int | None = None,
    downsample: bool = True,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Convert `src` and write the project checkpoint `out` (atomically); returns the checkpoint."""
    if not downsample:
        raise CheckpointError(
            "the authors' network without --downsample (no stage-1 fusion, stage-2 fusion unpooled on "
            "28x28) is not a model this project has; only their --downsample network (both published "
            "commands) can be imported"
        )
    named = AUTHORS_FILE_NAME.fullmatch(src.name)
    run = {
        "frames": frames or PUBLISHED["frames"],
        "stride": stride or (int(named["stride"]) if named else PUBLISHED["stride"]),
        "resolution": resolution or PUBLISHED["resolution"],
    }
    state = _load_authors_file(src)
    cfg, weights = convert(state, **run)
    if named and named["model"] != cfg.ann:
        raise CheckpointError(f"{src.name} names {named['model']} but its tensors are a {cfg.ann}")
    if class_names is not None and len(class_names) != cfg.num_classes:
        raise CheckpointError(f"{len(class_names)} class names given for {cfg.num_classes} classes")
    data = {"dataset": named["dset"].lower()} if named and named["dset"].lower() != "synthetic" else {}
    ckpt = {
        "format_version": FORMAT_VERSION,
        "model_config": cfg.to_dict(),
        "train_config": {"model": cfg.to_dict(), "data": data, "imported_from": str(src)},
        "model": weights,
        "epoch": 0,
        "step": 0,
        "best_metric": None,
        "class_names": class_names or [str(i) for i in range(cfg.num_classes)],
    }
    save_checkpoint(out, ckpt)
    return ckpt


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m respike_neuro.import_authors",
        description="Convert a state_dict saved by the authors' ReSpike code (train_fusion.py / "
        "train_kinetics.py) into a respike_neuro checkpoint for export, evaluation and Lava.",
    )
    parser.add_argument("src", type=Path, help="the authors' .pth (their model.state_dict())")
    parser.add_argument("-o", "--out", type=Path, required=True, help="project checkpoint to write (.pt)")
    parser.add_argument("--stride", type=int, default=None,
                        help="key-frame stride s (default: from the file name, else 4)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default 16)")
    parser.add_argument("--resolution", type=int, default=None, help="frame side in pixels (default 224)")
    parser.add_argument("--downsample", type=int, choices=(0, 1), default=1,
                        help="1 (default): their --downsample network; 0 is refused (see --help text)")
    parser.add_argument("--class-names", type=Path, default=None,
                        help="text file with one class name per line, in label order (default: 0..K-1)")
    args = parser.parse_args(argv)

    def body() -> int:
        for name in ("stride", "frames", "resolution"):
            check_number(getattr(args, name), f"--{name}", minimum=1)
        check_input_file(args.src, "src")
        if args.class_names is not None:
            check_input_file(args.class_names, "--class-names")
        check_output_file(args.out, "--out", inputs=(args.src, args.class_names))
        names = None
        if args.class_names is not None:
            names = [line.strip() for line in args.class_names.read_text().splitlines() if line.strip()]
        ckpt = import_authors(
            args.src, args.out, frames=args.frames, stride=args.stride, resolution=args.resolution,
            downsample=bool(args.downsample), class_names=names,
        )
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        print(
            f"{args.src} -> {args.out}: {cfg.ann} + MS-ResNet width {cfg.snn_width} blocks "
            f"{list(cfg.snn_blocks)}, {cfg.num_classes} classes, {len(ckpt['model'])} tensors; "
            f"{cfg.frames} frames, stride {cfg.stride}, {cfg.resolution}^2"
        )
        return 0

    return guarded(body, errors=(CheckpointError, ValueError, OSError), prefix=f"{parser.prog}: error")


if __name__ == "__main__":
    sys.exit(main())
