# ruff: noqa: E501  (the corpus reads best one case per line)
"""Fuzz corpus over every CLI (issue 15): bad option values, bad files, outputs that are inputs or cannot
be written. Each case runs the CLI's main(argv) in-process and must end with the documented exit status
(2: bad command line, found before any work; 1: a bad file or a failed run), exactly one line on stderr
and no traceback, while every file in the workspace stays byte-identical and no temporary or 0-byte
file is left behind. The totals are printed at the end (README, Reliability).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from respike_neuro.checkpoint import FORMAT_VERSION, save_checkpoint
from respike_neuro.config import ModelConfig
from respike_neuro.models.hybrid import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_classes=12, frames=4, stride=2, resolution=32, snn_width=8, fusion_pool=(1, 1, 1, 1))
TOTALS = {"tried": 0, "clean": 0}


def _script(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def _mains() -> dict[str, Callable[[list[str]], int]]:
    from respike_neuro import evaluate, import_authors, qat, summary, train
    from respike_neuro.sim import cli as run_lava

    to_nir = _script("respike_fuzz_to_nir", "export/to_nir.py")
    demo = _script("respike_fuzz_hybrid_demo", "sim/hybrid_demo.py")
    return {
        "train": train.main, "evaluate": evaluate.main, "summary": summary.main, "qat": qat.main,
        "run_lava": run_lava.main, "to_nir": to_nir.main, "hybrid_demo": demo.main,
        "import_authors": import_authors.main,
    }


def _checkpoint(path: Path, *, train_config=None, class_names="default", nan: bool = False, **model) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**TINY, **model})
    weights = build_model(cfg).state_dict()
    if nan:
        weights = {k: (v.fill_(float("nan")) if v.is_floating_point() else v) for k, v in weights.items()}
    state = dict(
        format_version=FORMAT_VERSION, model_config=cfg.to_dict(), model=weights,
        train_config={"data": {"dataset": "synthetic", "test_clips": 4}} if train_config is None else train_config,
        epoch=0, step=0, class_names=[f"c{i}" for i in range(12)] if class_names == "default" else class_names,
    )
    return save_checkpoint(path, state)


def _wide_video(path: Path) -> Path:
    """A valid, tiny (~0.7 MB) 32768x2 video: decoding it is cheap, resizing it is not."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32768, 2, "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame.from_ndarray(np.zeros((2, 32768, 3), np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The workspace every case runs against (it must come out unchanged)."""
    d = tmp_path_factory.mktemp("fuzz")
    _checkpoint(d / "ok.pt")
    _checkpoint(d / "tc.pt", train_config=5)
    _checkpoint(d / "names.pt", class_names=None)
    _checkpoint(d / "nan.pt", nan=True, architecture="snn", inputs="res")
    (d / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "model5.yaml").write_text("model: 5\n")
    (d / "text.txt").write_text("not a checkpoint\n")
    (d / "graph.nir").write_text("not a NIR graph\n")
    (d / "folder").mkdir()
    run = d / "finished"  # another run's results, without last.pt
    run.mkdir()
    for name, text in (("best.pt", "weights"), ("metrics.jsonl", '{"kind": "epoch"}\n'), ("test_results.json", "{}")):
        (run / name).write_text(text)
    _wide_video(d / "wide.mkv")
    torch.save({"snn_backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}, d / "authors.pth")  # partial
    return d


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


T = ["--set", "train.progress=false"]
CASES: list[tuple[str, str, list[str], int, str]] = [
    # (id, cli, argv with {ws} for the workspace, exit status, message fragment)
    ("train-head-dim-0", "train", [*T, "--set", "model.attention_head_dim=0"], 2, "attention_head_dim must be"),
    ("train-device-meta", "train", [*T, "--device", "meta"], 2, "not a device"),
    ("train-device-tpu", "train", [*T, "--device", "tpu"], 2, "not a device"),
    ("train-device-cuda9", "train", [*T, "--device", "cuda:9"], 2, "cuda"),
    ("train-threads-neg", "train", [*T, "--threads", "-1"], 2, "train.threads must be >= 1"),
    ("train-binary-config", "train", ["--config", "{ws}/random.bin"], 2, "not a text (YAML) file"),
    ("train-model-5", "train", ["--config", "{ws}/model5.yaml"], 2, "section 'model' must be a mapping"),
    ("train-ann-weights-random", "train", [*T, "--set", "model.ann_weights={ws}/random.bin", "--out", "{ws}/o1"],
     2, "not a torch weights file"),
    ("train-blocks-0", "train", [*T, "--set", "model.snn_blocks=[0,2,2,2]"], 2, "snn_blocks entries"),
    ("train-blocks-neg", "train", [*T, "--set", "model.snn_blocks=[2,-1,2,2]"], 2, "snn_blocks entries"),
    ("train-pool-0", "train", [*T, "--set", "model.fusion_pool=[0,1,1,1]"], 2, "fusion_pool[0]"),
    ("train-pool-neg", "train", [*T, "--set", "model.fusion_pool=[1,-2,1,1]"], 2, "fusion_pool[1]"),
    ("train-pool-too-big", "train", [*T, "--set", "model.fusion_pool=[4,2,1,64]"], 2, "fusion_pool[3]"),
    ("train-threshold-nan", "train", [*T, "--set", "model.threshold=.nan"], 2, "threshold"),
    ("train-beta-inf", "train", [*T, "--set", "model.beta=.inf"], 2, "beta"),
    ("train-alpha-neg", "train", [*T, "--set", "model.surrogate_alpha=-2"], 2, "surrogate_alpha must be > 0"),
    ("train-alpha-nan", "train", [*T, "--set", "model.surrogate_alpha=.nan"], 2, "surrogate_alpha must be"),
    ("train-lr-inf", "train", [*T, "--set", "train.lr=.inf"], 2, "train.lr must be a finite number"),
    ("train-lr-0", "train", [*T, "--set", "train.lr=0"], 2, "train.lr must be > 0"),
    ("train-min-lr", "train", [*T, "--set", "train.lr=0.01", "train.min_lr=0.1"], 2, "train.min_lr must be"),
    ("train-test-neg", "train", [*T, "--set", "data.test_clips=-1"], 2, "data.test_clips must be >= 0"),
    ("train-val-0", "train", [*T, "--set", "data.val_clips=0"], 2, "data.val_clips must be >= 1"),
    ("train-out-proc", "train", [*T, "--out", "/proc/respike-fuzz"], 2, "not writable"),
    ("train-out-file", "train", [*T, "--out", "{ws}/text.txt"], 2, "not a folder"),
    ("train-out-finished-run", "train", [*T, "--out", "{ws}/finished"], 2, "another run's results"),
    ("eval-split-bogus", "evaluate", ["{ws}/ok.pt", "--split", "bogus"], 2, "invalid choice: 'bogus'"),
    ("eval-num-clips-0", "evaluate", ["{ws}/ok.pt", "--num-clips", "0"], 2, "--num-clips 0"),
    ("eval-num-clips-neg", "evaluate", ["{ws}/ok.pt", "--num-clips", "-4"], 2, "--num-clips -4"),
    ("eval-batch-0", "evaluate", ["{ws}/ok.pt", "--batch-size", "0"], 2, "--batch-size 0"),
    ("eval-threads-neg", "evaluate", ["{ws}/ok.pt", "--threads", "-1"], 2, "--threads -1"),
    ("eval-device-meta", "evaluate", ["{ws}/ok.pt", "--device", "meta"], 2, "not a device"),
    ("eval-out-is-ckpt", "evaluate", ["{ws}/ok.pt", "--out", "{ws}/ok.pt"], 2, "not a folder"),
    ("eval-out-proc", "evaluate", ["{ws}/ok.pt", "--out", "/proc/respike-fuzz"], 2, "not writable"),
    ("eval-missing", "evaluate", ["{ws}/missing.pt"], 2, "no such file"),
    ("eval-random-bytes", "evaluate", ["{ws}/random.bin", "--out", "{ws}/o2"], 1, "not a readable torch file"),
    ("eval-train-config-5", "evaluate", ["{ws}/tc.pt", "--out", "{ws}/o3"], 1, "train_config must be a mapping"),
    ("eval-class-names-none", "evaluate", ["{ws}/names.pt", "--out", "{ws}/o4"], 1, "class_names must be a list"),
    ("to_nir-out-is-input", "to_nir", ["{ws}/ok.pt", "-o", "{ws}/ok.pt"], 2, "is also an input"),
    ("to_nir-out-folder", "to_nir", ["{ws}/ok.pt", "-o", "{ws}/folder"], 2, "is a folder"),
    ("to_nir-out-proc", "to_nir", ["{ws}/ok.pt", "-o", "/proc/respike-fuzz.nir"], 2, "not writable"),
    ("to_nir-nan-validate", "to_nir", ["{ws}/nan.pt", "-o", "{ws}/nan.nir", "--validate"], 1, "NaN"),
    ("to_nir-text", "to_nir", ["{ws}/text.txt", "-o", "{ws}/t.nir"], 1, "not a readable"),
    ("lava-timesteps-0", "run_lava", ["{ws}/graph.nir", "--timesteps", "0"], 2, "--timesteps 0: must be >= 1"),
    ("lava-timesteps-1e11", "run_lava", ["{ws}/graph.nir", "--timesteps", "100000000000"], 2, "must be"),
    ("lava-segments-0", "run_lava", ["{ws}/graph.nir", "--segments", "0"], 2, "--segments 0"),
    ("lava-json-is-input", "run_lava", ["{ws}/graph.nir", "--json", "{ws}/graph.nir"], 2, "is also an input"),
    ("lava-missing", "run_lava", ["{ws}/missing.nir"], 2, "no such file"),
    ("lava-not-nir", "run_lava", ["{ws}/graph.nir", "--backend", "emulator"], 1, "not a readable NIR file"),
    ("summary-plot-proc", "summary", ["--plot", "/proc/respike-fuzz.png"], 2, "not writable"),
    ("summary-plot-suffix", "summary", ["--plot", "{ws}/card.pngx"], 2, "unknown file type '.pngx'"),
    ("summary-plot-folder", "summary", ["--plot", "{ws}/folder"], 2, "is a folder"),
    ("summary-plot-no-suffix", "summary", ["--plot", "{ws}/card"], 2, "unknown file type"),
    ("summary-plot-is-input", "summary", ["--checkpoint", "{ws}/ok.pt", "--plot", "{ws}/ok.pt"], 2, "unknown file"),
    ("summary-rate-nan", "summary", ["--rate", "nan"], 2, "--rate nan"),
    ("summary-emac-inf", "summary", ["--e-mac", "inf"], 2, "--e-mac inf"),
    ("summary-clips-0", "summary", ["--checkpoint", "{ws}/ok.pt", "--measure", "--clips", "0"], 2, "--clips 0"),
    ("summary-binary-config", "summary", ["--config", "{ws}/random.bin"], 2, "not a text (YAML) file"),
    ("summary-train-config-5", "summary", ["--checkpoint", "{ws}/tc.pt", "--measure", "--clips", "1"], 1,
     "train_config must be a mapping"),
    ("qat-out-folder", "qat", ["{ws}/ok.pt", "-o", "{ws}/folder"], 2, "is a folder"),
    ("qat-out-is-nir", "qat", ["{ws}/ok.pt", "--nir", "{ws}/graph.nir", "-o", "{ws}/graph.nir"], 2, "is also an input"),
    ("qat-out-suffix", "qat", ["{ws}/ok.pt", "-o", "{ws}/x.h5"], 2, "unknown file type"),
    ("qat-threads-neg", "qat", ["{ws}/ok.pt", "-o", "{ws}/q.nir", "--threads", "-1"], 2, "--threads -1"),
    ("qat-device-tpu", "qat", ["{ws}/ok.pt", "-o", "{ws}/q.nir", "--device", "tpu"], 2, "not a device"),
    ("qat-lr-nan", "qat", ["{ws}/ok.pt", "-o", "{ws}/q.nir", "--lr", "nan"], 2, "lr must be finite"),
    ("qat-epochs-neg", "qat", ["{ws}/ok.pt", "-o", "{ws}/q.nir", "--epochs", "-1"], 2, "epochs must be >= 0"),
    ("qat-train-config-5", "qat", ["{ws}/tc.pt", "-o", "{ws}/q.nir"], 1, "train_config must be a mapping"),
    ("demo-plot-suffix", "hybrid_demo", ["{ws}/ok.pt", "--plot", "{ws}/plot"], 2, "unknown file type"),
    ("demo-device-meta", "hybrid_demo", ["{ws}/ok.pt", "--device", "meta"], 2, "not a device"),
    ("demo-missing-video", "hybrid_demo", ["{ws}/ok.pt", "--video", "{ws}/none.mp4"], 2, "no such file"),
    ("demo-wide-video", "hybrid_demo", ["{ws}/ok.pt", "--video", "{ws}/wide.mkv"], 1, "per-clip budget"),
    ("eval-authors-file", "evaluate", ["{ws}/authors.pth", "--out", "{ws}/o5"], 1, "import_authors"),
    ("to_nir-authors-file", "to_nir", ["{ws}/authors.pth", "-o", "{ws}/a.nir"], 1, "python -m respike_neuro.import_authors"),
    ("import-partial", "import_authors", ["{ws}/authors.pth", "-o", "{ws}/i.pt"], 1, "missing"),
    ("import-out-is-input", "import_authors", ["{ws}/authors.pth", "-o", "{ws}/authors.pth"], 2, "is also an input"),
    ("import-checkpoint", "import_authors", ["{ws}/ok.pt", "-o", "{ws}/i.pt"], 1, "already a respike_neuro checkpoint"),
    ("import-random-bytes", "import_authors", ["{ws}/random.bin", "-o", "{ws}/i.pt"], 1, "not a readable torch file"),
    ("import-stride-0", "import_authors", ["{ws}/authors.pth", "-o", "{ws}/i.pt", "--stride", "0"], 2, "--stride 0"),
    ("import-downsample-0", "import_authors", ["{ws}/authors.pth", "-o", "{ws}/i.pt", "--downsample", "0"], 1,
     "without --downsample"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clean_line(case, ws, capsys):
    name, cli, argv, status, message = case
    if name == "train-device-cuda9" and torch.cuda.device_count() > 9:
        pytest.skip("this machine has 10 GPUs")
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    before = _snapshot(ws)
    TOTALS["tried"] += 1
    try:
        rc = _mains()[cli](argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    err = capsys.readouterr().err
    after = _snapshot(ws)
    assert "Traceback" not in err, err
    assert rc == status and err.count("\n") == 1 and message in err, (rc, err)
    assert {k: v for k, v in after.items() if k in before} == before, "an input changed"
    assert set(before) <= set(after), f"deleted: {set(before) - set(after)}"
    leftovers = [k for k in set(after) - set(before) if k.endswith(".tmp") or (ws / k).stat().st_size == 0]
    assert not leftovers, leftovers
    TOTALS["clean"] += 1


def test_zz_print_totals(capsys):
    """Runs last in this file: the totals for the README."""
    with capsys.disabled():
        print(f"\nfuzz corpus: {TOTALS['tried']} bad inputs tried, {TOTALS['clean']} clean errors "
              f"(documented exit status, one line, no traceback, no file changed or left behind)")
    assert TOTALS["tried"] == TOTALS["clean"]
