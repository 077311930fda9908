"""build_dataset: names, aliases, the synthetic pass-through and argument checks."""

from __future__ import annotations

import pytest

from respike_neuro.data.registry import DATASETS, build_dataset, canonical_name


def test_names_and_aliases():
    assert canonical_name("UCF-101") == "ucf101" and canonical_name("hmdb_51") == "hmdb51"
    assert canonical_name("Kinetics-400") == canonical_name("k400") == "kinetics400"
    assert set(DATASETS) == {"synthetic", "ucf101", "hmdb51", "kinetics400"}
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        canonical_name("imagenet")


def test_synthetic_takes_the_trainers_arguments():
    from respike_neuro.data.synthetic import SyntheticActions

    # the call train.build_split makes: root/fold/mode do not apply to generated clips
    ds = build_dataset("synthetic", root=None, split="val", fold=1, frames=4, resolution=32, mode="eval",
                       num_clips=6, seed=2)
    assert isinstance(ds, SyntheticActions) and len(ds) == 6 and ds.split == "val"
    clip, label = ds[0]
    assert clip.shape == (4, 3, 32, 32) and isinstance(label, int)


def test_argument_errors_name_the_argument(ucf_root):
    with pytest.raises(ValueError, match="needs root"):
        build_dataset("ucf101", split="train")
    with pytest.raises(ValueError, match="multiple of the key/residual stride 3"):
        build_dataset("ucf101", root=ucf_root, frames=8, stride=3)
    with pytest.raises(ValueError, match="split"):
        build_dataset("hmdb51", root=ucf_root, split="validation")
    with pytest.raises(ValueError, match="mode"):
        build_dataset("ucf101", root=ucf_root, mode="infer")
    with pytest.raises(ValueError, match="resolution"):
        build_dataset("ucf101", root=ucf_root, resolution=0)


def test_mode_follows_split_unless_given(ucf_root):
    kw = dict(root=ucf_root, fold=1, frames=4, resolution=8)
    assert build_dataset("ucf101", split="train", **kw).mode == "train"
    assert build_dataset("ucf101", split="test", **kw).mode == "eval"
    assert build_dataset("ucf101", split="test", mode="train", **kw).mode == "train"
