import pytest
import torch

from respike_neuro.data.clips import IMAGENET_MEAN, IMAGENET_STD, normalize_clip, split_key_residual


def test_split_is_frame_minus_segment_key_frame():
    clip = torch.arange(2 * 8 * 3 * 2 * 2, dtype=torch.float32).view(2, 8, 3, 2, 2) ** 1.5
    key, residual = split_key_residual(clip, stride=4)
    assert key.shape == (2, 2, 3, 2, 2) and residual.shape == (2, 2, 3, 3, 2, 2)
    for b in range(2):
        for n in range(2):
            assert torch.equal(key[b, n], clip[b, 4 * n])
            for j in range(1, 4):
                # differenced against the segment's key frame, not the previous frame
                assert torch.equal(residual[b, n, j - 1], clip[b, 4 * n + j] - clip[b, 4 * n])


def test_static_clip_gives_exactly_zero_residuals_after_normalisation():
    frame = torch.rand(3, 8, 8)
    clip = normalize_clip(frame.expand(1, 12, 3, 8, 8).clone())
    _, residual = split_key_residual(clip, stride=3)
    assert torch.count_nonzero(residual) == 0


def test_residual_is_difference_over_channel_std():
    clip = torch.rand(1, 4, 3, 5, 5)
    _, residual = split_key_residual(normalize_clip(clip), stride=4)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(residual[0, 0, 0], (clip[0, 1] - clip[0, 0]) / std)


def test_normalize_uses_same_stats_for_every_frame():
    clip = torch.full((5, 3, 2, 2), 0.5)
    out = normalize_clip(clip)
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, :, 0, 0], expected.expand(5, 3))


@pytest.mark.parametrize("frames,stride", [(16, 5), (6, 4)])
def test_stride_must_divide_clip_length(frames, stride):
    with pytest.raises(ValueError, match="not divisible by stride"):
        split_key_residual(torch.zeros(1, frames, 3, 4, 4), stride)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        split_key_residual(torch.zeros(8, 3, 4, 4), 4)
    with pytest.raises(ValueError, match="3, H, W"):
        normalize_clip(torch.zeros(2, 4, 4, 4))
