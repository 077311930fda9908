import hashlib
import math

import numpy as np
import pytest
import torch

from respike_neuro.data.clips import normalize_clip, split_key_residual
from respike_neuro.data.synthetic import MOTIONS, SCENES, SyntheticActions, main


def digest(clip: torch.Tensor) -> str:
    return hashlib.sha1(clip.numpy().tobytes()).hexdigest()


def test_items_are_deterministic_and_independent_of_access_order():
    a = SyntheticActions(num_clips=30, seed=3)
    b = SyntheticActions(num_clips=30, seed=3)
    forward = [digest(a[i][0]) for i in range(30)]
    backward = [digest(b[i][0]) for i in reversed(range(30))][::-1]
    assert forward == backward
    assert len(set(forward)) == 30
    assert digest(SyntheticActions(num_clips=30, seed=4)[0][0]) != forward[0]
    assert digest(a[-1][0]) == forward[-1]


def test_dataloader_workers_give_the_same_items():
    ds = SyntheticActions(num_clips=8, frames=4, resolution=32, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    clips = torch.cat([clip for clip, _ in loader])
    assert torch.equal(clips, torch.stack([ds[i][0] for i in range(8)]))


def test_splits_never_share_a_clip():
    digests = {
        split: {digest(ds[i][0]) for i in range(36)}
        for split in ("train", "val", "test")
        for ds in [SyntheticActions(split=split, num_clips=36, frames=4, resolution=32)]
    }
    assert all(len(d) == 36 for d in digests.values())
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("frames", [8, 16])
def test_shapes_dtype_and_labels(resolution, frames):
    ds = SyntheticActions(num_clips=5, frames=frames, resolution=resolution)
    for i in range(len(ds)):
        clip, label = ds[i]
        assert clip.shape == (frames, 3, resolution, resolution)
        assert clip.dtype == torch.float32
        assert isinstance(label, int) and 0 <= label < ds.num_classes
        assert torch.isfinite(clip).all()


def test_odd_and_large_resolutions_and_single_frame():
    for resolution, frames in ((45, 3), (224, 4), (112, 1)):
        clip, _ = SyntheticActions(num_clips=1, frames=frames, resolution=resolution)[0]
        assert clip.shape == (frames, 3, resolution, resolution)


def test_clips_are_normalised_raw_ones_are_in_unit_range():
    ds = SyntheticActions(num_clips=3)
    raw_ds = SyntheticActions(num_clips=3, raw=True)
    for i in range(3):
        raw, label = raw_ds[i]
        assert raw.min() >= 0.0 and raw.max() <= 1.0
        assert torch.equal(raw, ds.raw_clip(i))
        clip, label_n = ds[i]
        assert label == label_n
        torch.testing.assert_close(clip, normalize_clip(raw), rtol=0, atol=0)
        assert raw.std() > 0.05  # a real picture, not a constant


def test_class_names_and_balanced_labels():
    ds = SyntheticActions(num_clips=100)
    assert ds.num_classes == 12 == len(ds.class_names) == len(set(ds.class_names))
    assert "pool_left" in ds.class_names and "field_down" in ds.class_names
    counts = np.bincount([ds.label_of(i) for i in range(len(ds))], minlength=ds.num_classes)
    assert counts.min() >= 8 and counts.max() - counts.min() <= 1
    assert [ds[i][1] for i in range(13)] == [ds.label_of(i) for i in range(13)]
    every = SyntheticActions(num_clips=len(SCENES) * len(MOTIONS), scenes=SCENES, motions=MOTIONS)
    assert every.num_classes == 30
    assert sorted({every.label_of(i) for i in range(len(every))}) == list(range(30))
    assert every.sample(29).scene_name == "tiles" and every.sample(29).motion_name == "counterclockwise"


def test_static_scene_cancels_in_residuals():
    """Off the moving objects a residual is noise only; without noise it is exactly zero."""
    stride = 4
    for noise in (0.0, 0.02):
        ds = SyntheticActions(num_clips=6, noise=noise)
        for i in range(len(ds)):
            s = ds.sample(i)
            _, residual = split_key_residual(normalize_clip(torch.from_numpy(s.raw))[None], stride)
            moving = torch.from_numpy(s.moving).view(1, -1, stride, *s.moving.shape[1:])
            touched = moving[:, :, 1:] | moving[:, :, :1]  # a mover is here now or at the key frame
            static = residual.permute(0, 1, 2, 4, 5, 3)[~touched]  # (pixels, 3)
            assert static.shape[0] > 0.5 * touched.numel()
            if noise == 0.0:
                assert torch.count_nonzero(static) == 0
                assert np.array_equal(s.raw[0][:, ~s.moving[0]], s.scene[:, ~s.moving[0]])
            else:
                raw_std = (static * torch.tensor([0.229, 0.224, 0.225])).std().item()
                assert raw_std == pytest.approx(math.sqrt(2) * noise, rel=0.05)
                swapped = moving[:, :, 1:] ^ moving[:, :, :1]  # a mover is here now XOR at the key frame
                moved = residual.permute(0, 1, 2, 4, 5, 3)[swapped]
                assert moved.abs().mean() > 3 * static.abs().mean()
            # the scene itself carries structure that would otherwise show up
            assert s.scene.std(axis=(1, 2)).max() > 0.05


@pytest.mark.parametrize(
    "motion,axis,sign", [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)]
)
def test_actor_moves_visibly_in_its_direction_and_stays_in_frame(motion, axis, sign):
    ds = SyntheticActions(num_clips=40, motions=(motion,), scenes=("court",))
    for i in range(len(ds)):
        xy = ds.sample(i).actor_xy
        step = np.diff(xy, axis=0)
        assert np.all(sign * step[:, axis] >= 0.03 * 64 - 1e-9)  # >= 1.9 px per frame at 64x64
        assert np.allclose(step[:, 1 - axis], 0)
        assert xy.min() > 0 and xy.max() < 64


def _leading_minus_trailing(ds: SyntheticActions, i: int) -> float:
    """x of the residual's bright (positive channel sum) mass minus x of its dark mass, last frame vs key."""
    s = ds.sample(i)
    lum = (s.raw[-1] - s.raw[0]).sum(axis=0)
    x = np.arange(lum.shape[1]) + 0.5
    bright, dark = np.clip(lum, 0, None), np.clip(-lum, 0, None)
    return float((bright.sum(0) @ x) / bright.sum() - (dark.sum(0) @ x) / dark.sum())


def test_bright_actors_make_a_single_residual_show_the_direction():
    """The leading edge of a bright actor is the residual's bright side; with a random polarity it is
    the dark side half of the time, so one residual frame cannot tell (a, right) from (-a, left)."""
    kw = dict(num_clips=24, frames=4, stride=4, motions=("right",), scenes=("court",), distractors=0,
              noise=0.0)
    bright, random = SyntheticActions(**kw), SyntheticActions(actor_polarity="random", **kw)
    assert all(_leading_minus_trailing(bright, i) > 2 for i in range(24))
    flipped = [_leading_minus_trailing(random, i) < 0 for i in range(24)]
    assert 4 <= sum(flipped) <= 20
    for i in range(24):
        a, b = bright.sample(i), random.sample(i)
        assert a.actor_offset.sum() > 0
        assert np.array_equal(a.actor_offset, b.actor_offset) != flipped[i]  # the same draw, flipped or not
        assert np.array_equal(a.actor_xy, b.actor_xy) and np.array_equal(a.scene, b.scene)


def test_trained_distribution_reads_the_checkpoints_data_record():
    from respike_neuro.data.synthetic import trained_distribution

    record = {"data": {"dataset": "synthetic", "seed": 3, "train_clips": 4800,
                       "options": {"actor_polarity": "random", "distractors": 1}}}
    assert trained_distribution(record) == {"seed": 3, "actor_polarity": "random", "distractors": 1}
    assert trained_distribution({"data": {"dataset": "ucf101", "seed": 3}}) == {}
    assert trained_distribution(None) == {} and trained_distribution({}) == {}
    ds = SyntheticActions(num_clips=2, **trained_distribution(record))
    assert (ds.seed, ds.actor_polarity, ds.distractors) == (3, "random", 1)


@pytest.mark.parametrize("motion,turn", [("clockwise", 1), ("counterclockwise", -1)])
def test_orbits_turn_the_right_way(motion, turn):
    ds = SyntheticActions(num_clips=10, motions=(motion,), scenes=("tiles",))
    for i in range(len(ds)):
        v = np.diff(ds.sample(i).actor_xy, axis=0)
        cross = v[:-1, 0] * v[1:, 1] - v[:-1, 1] * v[1:, 0]  # > 0 is clockwise on screen (y points down)
        assert np.all(turn * cross > 0)


@pytest.mark.parametrize("frames,stride", [(16, 4), (8, 2)])
def test_key_frames_do_not_reveal_the_direction(frames, stride):
    """Opposite motions visit the same positions: key-frame position statistics must match."""
    stats = {}
    for motion in ("left", "right", "up", "down"):
        ds = SyntheticActions(num_clips=150, frames=frames, stride=stride, motions=(motion,),
                              scenes=("pool",), distractors=0, clutter=0)
        keys = np.stack([ds.sample(i).actor_xy[::stride] for i in range(len(ds))])  # (clips, keys, 2)
        stats[motion] = (keys.mean(axis=(0, 1)), keys.std(axis=(0, 1)))
    for a, b in (("left", "right"), ("up", "down")):
        assert np.abs(stats[a][0] - stats[b][0]).max() < 3.0  # pixels; a biased start gives ~12
        assert np.abs(stats[a][1] - stats[b][1]).max() < 2.0
    # horizontal and vertical motions spread positions alike on both axes
    assert np.abs(stats["left"][1] - stats["up"][1][::-1]).max() < 2.0


def test_long_clips_slow_down_to_stay_in_frame():
    ds = SyntheticActions(num_clips=12, frames=64, motions=("right",), scenes=("field",))
    for i in range(len(ds)):
        xy = ds.sample(i).actor_xy
        assert xy[:, 0].min() > 0 and xy[:, 0].max() < 64 and xy[-1, 0] - xy[0, 0] > 20


def test_generation_is_fast_enough():
    import time

    ds = SyntheticActions(num_clips=40)
    ds[0]
    start = time.perf_counter()
    for i in range(40):
        ds[i]
    per_clip = (time.perf_counter() - start) / 40
    assert per_clip < 0.02  # measured ~1 ms; a per-pixel Python loop would take seconds


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(frames=0), "frames must be >= 1"),
        (dict(resolution=31), "resolution must be >= 32"),
        (dict(split="dev"), "split must be one of"),
        (dict(num_clips=0), "num_clips must be >= 1"),
        (dict(scenes=("pool", "beach")), r"unknown scenes \['beach'\]"),
        (dict(motions=()), "motions must be a non-empty list"),
        (dict(motions="left"), "motions must be a non-empty list"),
        (dict(scenes=("pool", "pool")), "duplicates"),
        (dict(noise=-0.1), "noise must be"),
        (dict(distractors=-1), "distractors must be >= 0"),
        (dict(actor_polarity="dark"), "actor_polarity must be one of"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticActions(**kwargs)


def test_bad_types_and_indices():
    with pytest.raises(TypeError, match="frames must be an int"):
        SyntheticActions(frames=8.0)
    with pytest.raises(TypeError, match="noise must be a number"):
        SyntheticActions(noise="0.1")
    with pytest.raises(TypeError, match="positional"):
        SyntheticActions("train")  # keyword-only
    ds = SyntheticActions(num_clips=3)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(IndexError, match="out of range"):
        ds[-4]


def test_cli_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--out", str(blocker / "grid.png"), "--frames", "4", "--resolution", "32"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err and str(blocker) in err


def test_cli_writes_a_small_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["--out", str(out), "--frames", "8", "--resolution", "32"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 400_000
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,match",
    [(["--stride", "3"], "multiple of stride"), (["--resolution", "16"], "resolution must be >= 32"),
     (["--stride", "1"], "stride must be >= 2"), (["--split", "dev"], "invalid choice"),
     (["--dpi", "0"], "dpi must be")],
)
def test_cli_bad_arguments_exit_nonzero_with_one_line(tmp_path, capsys, args, match):
    try:
        code = main(["--out", str(tmp_path / "x.png"), *args])
    except SystemExit as exit_:
        code = exit_.code
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "x.png").exists()
