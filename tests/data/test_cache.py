"""Frame cache: decode once, memory-mapped reads, invalidation, bad files, datasets read through it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from respike_neuro.data.cache import FrameCache, main
from respike_neuro.data.ucf101 import UCF101
from respike_neuro.data.video import VideoDecodeError, VideoReader

pytestmark = pytest.mark.usefixtures("quiet_video_warnings")


def test_frames_are_decoded_once_and_memory_mapped(tmp_path, vf):
    video = vf.write_video(tmp_path / "v.avi", 20, content="noise", w=48, h=36)
    cache = FrameCache(tmp_path / "cache", short_side=24)
    first = cache.frames(video)
    entry = cache.entry(video)
    stamp = entry.stat().st_mtime_ns
    again = cache.frames(video)
    assert isinstance(again, np.memmap) and not again.flags.writeable
    assert entry.stat().st_mtime_ns == stamp  # not rebuilt
    with VideoReader(video) as r:
        assert np.array_equal(first, r.read_all(short_side=24))
    assert first.shape == (20, 24, 32, 3) and cache.nbytes() == entry.stat().st_size
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_changed_source_or_short_side_gets_a_new_entry(tmp_path, vf):
    video = vf.write_video(tmp_path / "v.avi", 10)
    cache = FrameCache(tmp_path / "c", short_side=None)
    key = cache.key(video)
    assert FrameCache(tmp_path / "c", short_side=16).key(video) != key
    vf.write_video(video, 12)
    os.utime(video, ns=(1, 1))
    assert cache.key(video) != key and cache.frames(video).shape[0] == 12


def test_undecodable_video_is_remembered(tmp_path, vf):
    bad = vf.write_corrupt(tmp_path / "bad.avi")
    cache = FrameCache(tmp_path / "c")
    with pytest.raises(VideoDecodeError, match="bad.avi"):
        cache.frames(bad)
    assert cache.entry(bad).with_suffix(".bad").is_file()
    with pytest.raises(VideoDecodeError, match="cached verdict"):
        cache.frames(bad)
    assert cache.build([bad, vf.write_video(tmp_path / "ok.avi", 4)], progress=False) == \
        {"built": 1, "cached": 0, "failed": 1}


def test_dataset_reads_identical_clips_through_a_native_size_cache(ucf_root, tmp_path):
    kw = dict(split="test", fold=1, frames=8, resolution=16, clips_per_video=2)
    plain = UCF101(ucf_root, **kw)
    cached = UCF101(ucf_root, cache=FrameCache(tmp_path / "c", short_side=None), **kw)
    assert len(list((tmp_path / "c").glob("*.npy"))) == len(cached.videos)  # eval scan filled it
    for i in range(len(plain)):
        assert torch.equal(plain[i][0], cached[i][0])


def test_cache_through_dataloader_workers_and_scan_counts(ucf_root, tmp_path):
    ds = UCF101(ucf_root, split="train", fold=1, frames=8, resolution=16, val_groups=1,
                cache=tmp_path / "c", cache_short_side=16)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    clips = torch.cat([c for c, _ in loader])
    assert clips.shape == (12, 8, 3, 16, 16)
    assert ds.videos_skipped == 1 and ds.videos_short == 1
    assert len(list((tmp_path / "c").glob("*.npy"))) == 11 and len(list((tmp_path / "c").glob("*.bad"))) == 1
    assert ds.scan() == {"videos": 11, "corrupt": 1, "short": 1, "missing": 0}


def test_cli_fills_the_cache_and_fails_in_one_line(ucf_root, tmp_path, capsys):
    assert main(["ucf101", str(ucf_root), str(tmp_path / "c"), "--short-side", "16", "--splits", "test"]) == 0
    out = capsys.readouterr().out
    assert "test: 3 built, 0 already cached, 0 undecodable" in out
    assert main(["ucf101", str(tmp_path / "absent"), str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "absent" in err and "\n" not in err
    with pytest.raises(ValueError, match="short_side"):
        FrameCache(tmp_path / "c", short_side=0)
