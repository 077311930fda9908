"""sim/hybrid_demo.py end to end (in-process) and its one-line errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


demo = _load("hybrid_demo", ROOT / "sim" / "hybrid_demo.py")
helpers = _load("bridge_test_helpers", ROOT / "tests" / "test_bridge.py")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return helpers.make_checkpoint(tmp_path_factory.mktemp("demo") / "best.pt")


def _write_video(path: Path, frames: int, size=(40, 48)) -> None:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=8)
        st.width, st.height, st.pix_fmt = size[1], size[0], "yuv420p"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, size=(size[0], size[1], 3), dtype=np.uint8)
        for t in range(frames):
            img = np.roll(base, 2 * t, axis=1)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


@pytest.mark.lava  # starts Lava without the children fixture
def test_demo_on_video_prints_matching_prediction_and_plots(ckpt, tmp_path, capsys):
    nir_path = tmp_path / "model.nir"
    export = _load("to_nir", ROOT / "export" / "to_nir.py")
    assert export.main([str(ckpt), "-o", str(nir_path)]) == 0
    video = tmp_path / "clip.mp4"
    _write_video(video, 10)
    png = tmp_path / "demo.png"
    assert demo.main([str(ckpt), "--nir", str(nir_path), "--video", str(video), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("prediction"))
    assert "(same)" in line, line
    assert "layer4.0.lif2" in out and "layer1 total" in out and "cross-attention per stage" in out
    assert "host <-> chip traffic per timestep: 3,968 values in" in out
    assert png.stat().st_size > 10_000


def test_video_clip_follows_the_test_protocol(tmp_path):
    from respike_neuro.data.video import ClipTransform, VideoReader

    video = tmp_path / "clip.mp4"
    _write_video(video, 12)
    clip, note = demo.load_video(video, 8, 32)
    assert clip.shape == (8, 3, 32, 32) and note == ""
    with VideoReader(video) as r:  # centred clip of 12 frames: frames 2..9, same transform as eval
        want = ClipTransform(32, "test")(r.read(list(range(2, 10)))[0])
    assert torch.equal(clip, want)
    short = tmp_path / "short.mp4"
    _write_video(short, 3)
    clip, note = demo.load_video(short, 8, 32)
    assert "3 frame(s), the last held to 8" in note
    assert all(torch.equal(clip[2], clip[t]) for t in range(3, 8))


def test_demo_errors_are_one_line(ckpt, tmp_path, capsys, children):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    notnir = tmp_path / "x.nir"
    notnir.write_text("hello")
    notpng = tmp_path / "graph.png"
    notpng.write_text("a NIR file named .png")
    cases = [
        (["--video", str(junk)], "cannot decode"),
        (["--nir", str(notnir)], "not a readable NIR file"),
        (["--nir", str(tmp_path / "missing.nir")], "no such file"),
        (["--index", "-1"], "--index must be >= 0"),
        (["--plot", str(tmp_path / "plot")], "unknown file type"),
        (["--plot", str(notpng), "--nir", str(notpng)], "is also an input"),
        (["--device", "meta"], "not a device"),
    ]
    usage = ("no such file", "--index", "unknown file type", "is also an input", "not a device")
    for extra, msg in cases:  # usage errors exit 2 before anything loads; bad files 1
        assert demo.main([str(ckpt), *extra]) == (2 if msg.startswith(usage) else 1), extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"PK\x03\x04garbage")
    assert demo.main([str(bad_ckpt)]) == 1
    assert "not a readable torch file" in capsys.readouterr().err
    assert children() == []


def test_demo_on_the_emulator_backend_forks_nothing(ckpt, capsys, children):
    assert demo.main([str(ckpt), "--backend", "emulator", "--mode", "fixed"]) == 0
    out = capsys.readouterr().out
    assert "(0 Lava processes)" in out and "run on the emulator backend (no Lava)" in out
    assert "prediction" in out and children() == []
