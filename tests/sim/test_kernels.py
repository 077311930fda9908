"""The vectorised conv kernels (used by the fast Lava models) against the independent reference executor."""

import numpy as np
import pytest

from respike_neuro.export.reference_executor import conv2d_nchw
from respike_neuro.sim import kernels


@pytest.mark.parametrize(
    "c_in,c_out,k,stride,pad,groups,binary",
    [
        (3, 5, 3, 2, 1, 1, False),  # stem-like, real-valued input
        (4, 6, 3, 1, 1, 1, True),  # spike input, scatter path
        (4, 6, 3, 2, 1, 1, True),  # strided spike input
        (6, 6, 2, 2, 0, 6, False),  # avg-pool as depthwise conv
        (4, 8, 1, 1, 0, 1, False),  # 1x1 shortcut conv
        (4, 6, 3, 1, 1, 2, False),  # grouped conv
    ],
)
def test_conv_kernel_matches_reference(rng, c_in, c_out, k, stride, pad, groups, binary):
    h, w = 9, 7
    x = (rng.random((c_in, h, w)) < 0.15).astype(float) if binary else rng.normal(size=(c_in, h, w))
    wt = rng.normal(size=(c_out, c_in // groups, k, k))
    want = conv2d_nchw(x[None], wt, None, (stride, stride), (pad, pad, pad, pad), (1, 1), groups)[0]
    for thr in (0.0, 1.0):  # dense GEMM path and (for binary input) the spike-scatter path
        kern = kernels.ConvKernel(
            kernels.lava_conv_weight(wt), (w, h, c_in), stride, pad, 1, groups, sparse_threshold=thr
        )
        got = kernels.from_lava(kern(kernels.to_lava(x), binary=binary))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def shift_round(acc: np.ndarray, exp: int) -> np.ndarray:
    """The integer reference for a Loihi weight exponent: << exp, or arithmetic >> -exp."""
    return np.left_shift(acc, exp) if exp >= 0 else np.right_shift(acc, -exp)


@pytest.mark.parametrize(
    ("binary", "exp", "bits", "thr"),
    [
        (False, -3, 24, 0.0),  # graded input: float64 accumulator, saturates 24 bits
        (True, -3, 24, 0.0),  # spike input: float32 GEMM, shift and saturation in float32 too
        (True, 5, 12, 0.0),  # left shift, saturating a narrower accumulator
        (True, -2, 12, 1.0),  # spike-scatter path
    ],
)
def test_fixed_conv_is_exact_integer_arithmetic(rng, binary, exp, bits, thr):
    if binary:
        x = (rng.random((9, 8, 24)) < 0.3).astype(np.int32)
    else:
        x = rng.integers(-(1 << 20), 1 << 20, size=(5, 5, 3))
    wt = rng.integers(-128, 128, size=(4, x.shape[2], 3, 3))
    kern = kernels.ConvKernel(kernels.lava_conv_weight(wt), x.shape, 1, 1, 1, 1, sparse_threshold=thr)
    assert kern.exact_f32  # integer weights; the float32 GEMM is taken for spike input only
    out, sat = kernels.fixed_conv(kern, x, exp, binary=binary, bits=bits, dtype=np.int32)
    exact = conv2d_nchw(
        kernels.from_lava(x)[None].astype(np.int64), wt.astype(np.int64), None,
        (1, 1), (1, 1, 1, 1), (1, 1), 1,
    )[0]
    want, n = kernels.clamp_signed(shift_round(np.rint(exact).astype(np.int64), exp), bits)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(kernels.from_lava(out), want)
    assert sat == n
    if exp > 0 or not binary:
        assert sat > 0  # saturation is exercised


def test_kernel_rejects_bad_shapes():
    with pytest.raises(ValueError, match="groups"):
        kernels.ConvKernel(np.zeros((4, 3, 3, 3)), (5, 5, 4), groups=1)
    kern = kernels.ConvKernel(np.zeros((4, 3, 3, 3)), (5, 5, 3))
    with pytest.raises(ValueError, match="shape"):
        kern(np.zeros((5, 4, 3)))


@pytest.mark.parametrize(("k", "pad"), [(3, 1), (1, 0)])
def test_binary_input_with_integer_weights_runs_float32_exactly(k, pad):
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(16, k, k, 24)).astype(np.float64)  # 8-bit mantissas
    kern = kernels.ConvKernel(w, (9, 7, 24), 1, pad)
    assert kern.exact_f32
    x = (rng.random((9, 7, 24)) < 0.3).astype(np.float64)
    got = kern(x, binary=True)
    want = (kern._im2col(kern._pad(x)) if k > 1 else x.reshape(-1, 24)) @ kern.w_gemm
    assert got.dtype == np.float64 and np.array_equal(got, want.reshape(got.shape))
    # real-valued weights, or integers whose sums could pass 2**24, keep float64
    assert not kernels.ConvKernel(w + 0.5, (9, 7, 24), 1, pad).exact_f32
    assert not kernels.ConvKernel(w * 2**16, (9, 7, 24), 1, pad).exact_f32
