"""PyAV decoding, clip sampling, transforms, the skip log and the generic video dataset."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from respike_neuro.data.clips import split_key_residual
from respike_neuro.data.video import (
    SEEK_THRESHOLD,
    ClipTransform,
    SkipLog,
    VideoClipDataset,
    VideoDataWarning,
    VideoDecodeError,
    VideoReader,
    VideoRecord,
    eval_indices,
    holdout_by_group,
    probe_video,
    scaled_size,
    train_indices,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, vf):
    d = tmp_path_factory.mktemp("videos")
    return {
        "index": vf.write_video(d / "index.avi", 20),
        "short": vf.write_video(d / "short.avi", 5),
        "static": vf.write_video(d / "static.avi", 12, content="static"),
        "long_avi": vf.write_video(d / "long.avi", 120, content="noise", gop=10),
        "long_mp4": vf.write_video(d / "long.mp4", 120, content="noise"),
        "long_mkv": vf.write_video(d / "long.mkv", 90, content="noise", codec="libx264"),
        "corrupt": vf.write_corrupt(d / "corrupt.avi"),
        "empty": (d / "empty.mp4", (d / "empty.mp4").write_bytes(b""))[0],
    }


# -- decoding


def test_reader_reports_header_and_decodes_requested_frames(videos, vf):
    with VideoReader(videos["index"]) as r:
        assert (r.num_frames, r.fps, r.size) == (20, 25.0, (32, 24))
        frames, real = r.read([0, 3, 3, 7, 19])
    assert frames.dtype == np.uint8 and frames.shape == (5, 24, 32, 3) and real == 5
    assert [vf.decoded_index(f) for f in frames] == [0, 3, 3, 7, 19]


def test_reader_holds_last_frame_past_the_end(videos, vf):
    with VideoReader(videos["short"]) as r:
        frames, real = r.read([2, 3, 4, 5, 6])
    assert real == 3
    assert [vf.decoded_index(f) for f in frames] == [2, 3, 4, 4, 4]
    assert np.array_equal(frames[3], frames[2]) and np.array_equal(frames[4], frames[2])


@pytest.mark.parametrize("name", ["long_avi", "long_mp4", "long_mkv"])
def test_seeking_gives_the_same_frames_as_decoding_from_the_start(videos, name):
    with VideoReader(videos[name]) as r:
        everything = r.read_all()
    want = np.arange(60, 76)
    assert want[0] >= SEEK_THRESHOLD
    with VideoReader(videos[name]) as r:
        frames, real = r.read(want)
        assert r.seeked
    assert real == len(want) and np.array_equal(frames, everything[want])


def test_mkv_without_frame_count_is_counted_by_packets(videos):
    import av

    with av.open(str(videos["long_mkv"])) as c:
        assert c.streams.video[0].frames == 0  # the case the packet count exists for
    with VideoReader(videos["long_mkv"]) as r:
        assert r.num_frames == 90


def test_reader_downscales_short_side(videos):
    with VideoReader(videos["index"]) as r:
        frames, _ = r.read([0, 1], short_side=12)
    assert frames.shape == (2, 12, 16, 3)
    assert scaled_size(320, 240, 128) == (171, 128) and scaled_size(240, 320, 128) == (128, 171)
    assert scaled_size(32, 24, 128) == (32, 24)  # never upscaled


@pytest.mark.parametrize("name", ["corrupt", "empty"])
def test_undecodable_files_raise_decode_error(videos, name):
    with pytest.raises(VideoDecodeError, match=name):
        probe_video(videos[name])


def test_probe_and_bad_read_arguments(videos):
    info = probe_video(videos["index"])
    assert (info.num_frames, info.width, info.height) == (20, 32, 24)
    with VideoReader(videos["index"]) as r:
        with pytest.raises(ValueError, match="non-decreasing"):
            r.read([3, 1])
        with pytest.raises(ValueError, match="non-empty"):
            r.read([])
    with pytest.raises(ValueError, match="threads"):
        VideoReader(videos["index"], threads=0)


# -- sampling


def test_train_consecutive_clips_are_in_range_and_cover_all_starts():
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(300):
        idx = train_indices(20, 8, generator=g)
        assert np.array_equal(np.diff(idx), np.ones(7)) and 0 <= idx[0] and idx[-1] <= 19
        starts.add(int(idx[0]))
    assert starts == set(range(13))
    idx = train_indices(20, 4, step=3, generator=g)
    assert np.array_equal(np.diff(idx), [3, 3, 3]) and idx[-1] <= 19


def test_sparse_sampling_takes_one_frame_per_segment():
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        idx = train_indices(40, 8, sampling="sparse", generator=g)
        assert np.array_equal(idx // 5, np.arange(8))
    assert np.array_equal(eval_indices(40, 8, 0, 1, sampling="sparse"), np.arange(8) * 5 + 2)
    assert np.array_equal(eval_indices(40, 8, 1, 2, sampling="sparse"), np.arange(8) * 5 + 3)


def test_eval_clips_are_uniformly_spaced_and_deterministic():
    assert np.array_equal(eval_indices(100, 16, 0, 1), np.arange(42, 58))  # centre clip: (100-16)/2
    starts = [int(eval_indices(100, 16, c, 4)[0]) for c in range(4)]
    assert starts == [11, 32, 53, 74]  # floor(84 * (c + 1/2) / 4 + 1/2)
    assert np.array_equal(eval_indices(100, 16, 2, 4), eval_indices(100, 16, 2, 4))


def test_short_videos_hold_the_last_frame_in_every_sampler():
    g = torch.Generator().manual_seed(0)
    expect = np.array([0, 1, 2, 3, 4, 4, 4, 4])
    assert np.array_equal(train_indices(5, 8, generator=g), expect)
    assert np.array_equal(train_indices(5, 8, sampling="sparse", generator=g), expect)
    assert np.array_equal(eval_indices(5, 8, 1, 3), expect)
    assert np.array_equal(eval_indices(10, 4, 0, 1, step=4), [0, 4, 8, 9])


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        train_indices(0, 8)
    with pytest.raises(ValueError, match="sampling"):
        train_indices(10, 8, sampling="dense")
    with pytest.raises(ValueError, match="clip"):
        eval_indices(10, 4, 3, 3)


# -- transforms


def test_static_clip_has_exactly_zero_residuals_after_the_full_pipeline(videos):
    for mode in ("train", "eval"):
        ds = VideoClipDataset([VideoRecord(videos["static"], 0, "static")], ["a"], frames=8, resolution=16,
                              mode=mode)
        with VideoReader(videos["static"]) as r:
            raw = r.read_all()
        assert all(np.array_equal(f, raw[0]) for f in raw)  # the codec is lossless: frames identical
        for seed in range(4):
            torch.manual_seed(seed)
            clip, _ = ds[0]
            res = split_key_residual(clip.unsqueeze(0), 4).residual
            assert clip.abs().sum() > 0 and torch.equal(res, torch.zeros_like(res))


def test_train_transform_is_random_per_clip_and_eval_is_not(vf):
    frames = np.repeat(vf.textured_frame(w=48, h=36)[None], 4, axis=0)
    train, ev = ClipTransform(16, "train"), ClipTransform(16, "test")
    outs = []
    for seed in range(5):
        torch.manual_seed(seed)
        outs.append(train(frames))
    assert all(o.shape == (4, 3, 16, 16) and o.dtype == torch.float32 for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) == 5
    assert torch.equal(ev(frames), ev(frames))


def test_eval_transform_resizes_short_side_then_centre_crops():
    frame = np.full((24, 48, 3), 255, dtype=np.uint8)
    frame[:, :16] = 0  # black left third
    clip = ClipTransform(12, "eval", raw=True)(frame[None])
    dark = (clip[0].mean(0).mean(0) < 0.5).sum().item()
    # short side 24 -> 12 gives width 24 with 8 dark columns; the centre crop drops 6 of them.
    # (Squashing to 12x12 would leave 4 dark columns, cropping without resizing 0.)
    assert clip.shape == (1, 3, 12, 12) and dark == 2


def test_transform_normalises_per_channel_and_rejects_bad_input():
    grey = np.full((2, 8, 8, 3), 128, dtype=np.uint8)
    clip = ClipTransform(8, "eval")(grey)
    expect = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(clip[:, :, 3, 3], expect.expand(2, 3), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        ClipTransform(8, "eval")(grey.astype(np.float32))
    with pytest.raises(ValueError, match="mode"):
        ClipTransform(8, "inference")


# -- skip log and dataset


def test_skip_log_is_shared_through_its_file_and_removed_by_its_owner(tmp_path):
    log = SkipLog()
    path = log.path
    copy = SkipLog.__new__(SkipLog)
    copy.__dict__.update(log.__getstate__())
    assert copy.record("corrupt", "/x/a.avi", "bad\theader\n")
    assert not copy.record("corrupt", "/x/a.avi", "again")
    copy.record("short", "/x/b.avi", "5 frames")
    assert log.entries("corrupt") == {"/x/a.avi": "bad header"} and list(log.entries("short")) == ["/x/b.avi"]
    del copy
    assert path.exists()
    del log
    assert not path.exists()
    named = SkipLog(tmp_path / "logs" / "skips.tsv")
    named.record("corrupt", "c.avi", "x")
    assert (tmp_path / "logs" / "skips.tsv").read_text() == "corrupt\tc.avi\tx\n"


def make_dataset(videos, names, **kw):
    recs = [VideoRecord(videos[n], i % 2, n) for i, n in enumerate(names)]
    return VideoClipDataset(recs, ["even", "odd"], frames=kw.pop("frames", 8), resolution=16, **kw)


def test_corrupt_video_in_train_mode_is_replaced_and_counted_across_workers(videos):
    ds = make_dataset(videos, ["index", "corrupt", "short", "static"], mode="train")
    assert ds.videos_skipped == 0 and len(ds) == 4
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDataWarning)
        labels = torch.cat([y for _, y in loader]).tolist()
    # item 1 (corrupt) deterministically becomes the next video, "short" (label 0)
    assert labels == [0, 0, 0, 1]
    assert ds.videos_skipped == 1 and ds.skipped_videos == 1
    assert ds.videos_short == 1  # "short" (5 < 8 frames) found by a worker too


def test_scan_drops_corrupt_videos_and_counts_short_ones(videos):
    with pytest.warns(VideoDataWarning, match="undecodable") as caught:
        ds = make_dataset(videos, ["index", "corrupt", "short", "empty"], mode="eval", clips_per_video=3)
    named = sorted(name for w in caught for name in ("corrupt.avi", "empty.mp4") if name in str(w.message))
    assert named == ["corrupt.avi", "empty.mp4"]  # one warning per bad file, naming it
    assert [r.video_id for r in ds.videos] == ["index", "short"]
    assert (ds.videos_skipped, ds.videos_short, len(ds)) == (2, 1, 6)
    assert ds.video_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.labels.tolist() == [0, 0, 0, 0, 0, 0]


def test_eval_items_are_deterministic_and_cover_the_video(videos, vf):
    ds = make_dataset(videos, ["index", "short"], mode="eval", clips_per_video=3)
    again = make_dataset(videos, ["index", "short"], mode="eval", clips_per_video=3)
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], again[i][0])
    firsts = [vf.decoded_index(ds.raw_clip(i)[0]) for i in range(3)]
    assert firsts == [2, 6, 10]  # round(12 * (c + 1/2) / 3) for 20 frames, T = 8
    short = [vf.decoded_index(f) for f in ds.raw_clip(4)]
    assert short == [0, 1, 2, 3, 4, 4, 4, 4]


def test_eval_runtime_failure_gives_a_blank_clip_with_the_true_label(videos):
    ds = make_dataset(videos, ["index", "corrupt"], mode="eval", clips_per_video=2, scan=False)
    with pytest.warns(VideoDataWarning, match="corrupt.avi"):
        clip, label = ds[2]
    assert label == 1 and clip.shape == (8, 3, 16, 16) and torch.equal(clip, torch.zeros_like(clip))
    assert ds.videos_skipped == 1 and len(ds) == 4


def test_dataset_rejects_bad_configuration(videos, tmp_path):
    with pytest.raises(ValueError, match="clips_per_video"):
        make_dataset(videos, ["index"], mode="train", clips_per_video=2)
    with pytest.raises(ValueError, match="frames"):
        make_dataset(videos, ["index"], frames=0)
    with pytest.raises(ValueError, match="label"):
        VideoClipDataset([VideoRecord(videos["index"], 5, "x")], ["a"], frames=4, resolution=8)
    with pytest.raises(ValueError, match="none of the 1 listed"), pytest.warns(VideoDataWarning):
        VideoClipDataset([VideoRecord(tmp_path / "nope.avi", 0, "nope")], ["a"], frames=4, resolution=8)
    with pytest.raises(IndexError):
        make_dataset(videos, ["index"], mode="eval")[1]


def test_holdout_by_group_takes_whole_groups_per_class_deterministically():
    labels = [0] * 10 + [1] * 10 + [2]
    groups = [f"g{i // 2}" for i in range(20)] + ["solo"]
    held = holdout_by_group(labels, groups, 0.3)
    for g in set(groups):
        members = [held[i] for i in range(len(groups)) if groups[i] == g]
        assert len(set(members)) == 1  # a group is never split
    assert held[:10].sum() == 4 and held[10:20].sum() == 4  # ceil to whole groups of 2: 3 -> 4
    assert not held[20]  # a class with one group keeps it for training
    perm = np.random.default_rng(0).permutation(len(labels))
    again = holdout_by_group([labels[i] for i in perm], [groups[i] for i in perm], 0.3)
    assert np.array_equal(again, held[perm])
    assert not holdout_by_group(labels, groups, 0.0).any()
    with pytest.raises(ValueError, match="fraction"):
        holdout_by_group(labels, groups, 1.0)


def test_pickled_copies_report_to_the_original_and_shared_logs_count_own_videos(videos, tmp_path):
    import pickle

    ds = make_dataset(videos, ["index", "corrupt"], mode="train")
    copy = pickle.loads(pickle.dumps(ds))  # what a spawn-started DataLoader worker receives
    with pytest.warns(VideoDataWarning):
        copy[1]
    assert ds.videos_skipped == 1 and copy.skip_log.path == ds.skip_log.path
    log = tmp_path / "skips.tsv"
    with pytest.warns(VideoDataWarning):
        a = make_dataset(videos, ["index", "corrupt"], mode="eval", skip_log=log)
        b = make_dataset(videos, ["index", "empty"], mode="eval", skip_log=log)
    assert a.videos_skipped == 1 and b.videos_skipped == 1 and len(log.read_text().splitlines()) == 2
