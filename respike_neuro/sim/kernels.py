"""Vectorised numpy convolution kernels in Lava's layout, shared by the Lava ProcessModels and the
numpy plan executor (so both compute bit-identical results).

Layout: input x[X, Y, C_in] (Lava's WHC), Lava weight W[C_out, kX, kY, C_in/groups] holding a TRUE
convolution (spatially flipped). Internally the flip is undone once, giving the correlation kernel
K[bx, ay, ci, co], and
    out[ox, oy, co] = sum_{bx, ay, ci} K[bx, ay, ci, co] * xpad[ox*sx + bx*dx, oy*sy + ay*dy, ci].
Dense inputs use im2col + one GEMM (BLAS); binary spike inputs below a density threshold use the
scatter form out = col2im(S @ K_cat) with S the sparse spike matrix, so cost scales with the spike
count instead of the input size. Binary input with integer weights (fixed point) runs the GEMM in
float32: every partial sum is then an integer below 2**24 in magnitude, which float32 holds exactly,
so the result is the float64 one at about twice the BLAS speed. That also moves the break-even
density of the scatter path down (it wins below ~4-12 % density against the float64 GEMM, ~1-4 %
against the float32 one, at ResNet-18 stage sizes on a 2-core EPYC): F32_SCATTER_FACTOR scales the
threshold for it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

try:  # scipy ships with Lava; the sparse path is skipped without it
    from scipy import sparse as _sparse
except ImportError:  # pragma: no cover
    _sparse = None

F32_SCATTER_FACTOR = 0.25


def to_lava(a: np.ndarray) -> np.ndarray:
    """(C, H, W) -> Lava's (X, Y, C) = (W, H, C)."""
    return np.ascontiguousarray(np.asarray(a).transpose(2, 1, 0))


def from_lava(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a).transpose(2, 1, 0))


def lava_conv_weight(w: np.ndarray) -> np.ndarray:
    """PyTorch correlation kernel (C_out, C_in/g, kH, kW) -> Lava Conv weight (C_out, kW, kH, C_in/g)."""
    return np.ascontiguousarray(np.asarray(w)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def _pair(v) -> tuple[int, int]:
    a = np.asarray(v, dtype=int).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return int(a[0]), int(a[1])


def conv_output_shape(input_shape, c_out: int, kernel, stride, padding, dilation) -> tuple[int, int, int]:
    """Output shape (X, Y, C_out) of a convolution in Lava's layout."""
    kx, ky = _pair(kernel)
    sx, sy = _pair(stride)
    px, py = _pair(padding)
    dx, dy = _pair(dilation)
    x, y = int(input_shape[0]), int(input_shape[1])
    ox = (x + 2 * px - dx * (kx - 1) - 1) // sx + 1
    oy = (y + 2 * py - dy * (ky - 1) - 1) // sy + 1
    if ox < 1 or oy < 1:
        raise ValueError(f"convolution leaves no output for input {tuple(input_shape)} and kernel {(kx, ky)}")
    return ox, oy, int(c_out)


class ConvKernel:
    """One convolution, precomputed for repeated per-timestep calls.

    `sparse_threshold`: use the spike-scatter path when the input is binary and its density is below
    this fraction (0 disables it).
    """

    def __init__(
        self,
        weight_lava: np.ndarray,
        input_shape,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        sparse_threshold: float = 0.0,
    ) -> None:
        w = np.asarray(weight_lava, dtype=np.float64)
        if w.ndim != 4:
            raise ValueError(
                f"Lava conv weight must be 4-D (C_out, kX, kY, C_in/groups), got shape {w.shape}"
            )
        self.c_out, self.kx, self.ky, self.cig = w.shape
        self.input_shape = tuple(int(s) for s in input_shape)
        self.c_in = self.input_shape[2]
        self.groups = int(groups)
        if self.cig * self.groups != self.c_in or self.c_out % self.groups:
            raise ValueError(f"weight {w.shape} with groups={groups} does not fit input {self.input_shape}")
        self.sx, self.sy = _pair(stride)
        self.px, self.py = _pair(padding)
        self.dx, self.dy = _pair(dilation)
        self.output_shape = conv_output_shape(
            self.input_shape,
            self.c_out,
            (self.kx, self.ky),
            (self.sx, self.sy),
            (self.px, self.py),
            (self.dx, self.dy),
        )
        # correlation kernel K[bx, ay, ci, co]
        k = np.ascontiguousarray(w[:, ::-1, ::-1, :].transpose(1, 2, 3, 0))
        self.k = k
        self.depthwise = self.groups == self.c_in and self.cig == 1 and self.c_out == self.c_in
        self.pointwise = self.kx == self.ky == 1 and self.px == self.py == 0 and self.groups == 1
        self.sparse_threshold = float(sparse_threshold) if self.groups == 1 else 0.0
        taps = self.kx * self.ky * self.cig
        self.exact_f32 = bool(np.all(k == np.rint(k)) and np.abs(k).max(initial=0.0) * taps < 2**24)
        if self.groups == 1:
            self.w_gemm = k.reshape(self.kx * self.ky * self.cig, self.c_out)
            if self.exact_f32:
                self.w_gemm32 = self.w_gemm.astype(np.float32)
            # scatter form: row ci holds all (bx, ay, co) taps of input channel ci
            self.w_scatter = np.ascontiguousarray(k.transpose(2, 0, 1, 3)).reshape(self.cig, -1)
        else:
            g = self.groups
            co_g = self.c_out // g
            self.w_groups = [k[:, :, :, i * co_g : (i + 1) * co_g].reshape(-1, co_g) for i in range(g)]
        x, y, c = self.input_shape
        self._xpad = np.zeros((x + 2 * self.px, y + 2 * self.py, c))
        self._xpad32 = self._xpad.astype(np.float32) if self.exact_f32 else None
        ox, oy, _ = self.output_shape
        # valid output/input index ranges per kernel tap for the scatter path
        self._taps = []
        for bx in range(self.kx):
            rx = self._tap_range(bx, self.dx, self.px, self.sx, x, ox)
            for ay in range(self.ky):
                ry = self._tap_range(ay, self.dy, self.py, self.sy, y, oy)
                if rx is not None and ry is not None:
                    self._taps.append((bx, ay, rx, ry))

    @staticmethod
    def _tap_range(b: int, d: int, p: int, s: int, n_in: int, n_out: int):
        """Output indices o with input index i = o*s + b*d - p inside [0, n_in)."""
        off = b * d - p
        lo = max(0, -(off // s) if off < 0 else 0)
        while lo * s + off < 0:
            lo += 1
        hi = min(n_out - 1, (n_in - 1 - off) // s)
        if hi < lo:
            return None
        return lo, hi, lo * s + off

    def __call__(self, x: np.ndarray, binary: bool = False) -> np.ndarray:
        return self.accumulate(x, binary).astype(np.float64, copy=False)

    def accumulate(self, x: np.ndarray, binary: bool = False) -> np.ndarray:
        """The convolution in the dtype it ran in: float32 on the exact binary-input path (integers, see
        the module docstring), float64 otherwise."""
        x = np.asarray(x)
        if x.shape != self.input_shape:
            raise ValueError(f"conv input has shape {x.shape}, expected {self.input_shape}")
        f32 = binary and self.exact_f32 and self.groups == 1
        if binary and self.sparse_threshold > 0 and _sparse is not None:
            nnz = np.count_nonzero(x)
            if nnz == 0:
                return np.zeros(self.output_shape, np.float32 if f32 else np.float64)
            # the float32 GEMM is 2-3x faster than the float64 one the threshold is set against
            if nnz < self.sparse_threshold * (F32_SCATTER_FACTOR if f32 else 1.0) * x.size:
                return self._scatter(np.asarray(x, dtype=np.float64))
        if f32:
            return self._gemm32(x)
        x = np.asarray(x, dtype=np.float64)
        if self.pointwise:
            xs = x[:: self.sx, :: self.sy, :]
            return (xs.reshape(-1, self.c_in) @ self.w_gemm).reshape(self.output_shape)
        xp = self._pad(x)
        if self.depthwise:
            return self._depthwise(xp)
        cols = self._im2col(xp)
        if self.groups == 1:
            return (cols @ self.w_gemm).reshape(self.output_shape)
        ox, oy, _ = self.output_shape
        cols = cols.reshape(ox * oy, self.kx * self.ky, self.c_in)
        outs = [
            cols[:, :, i * self.cig : (i + 1) * self.cig].reshape(ox * oy, -1) @ wg
            for i, wg in enumerate(self.w_groups)
        ]
        return np.concatenate(outs, axis=1).reshape(self.output_shape)

    def _gemm32(self, x: np.ndarray) -> np.ndarray:
        """The GEMM in float32 (exact here, see the module docstring)."""
        x32 = x.astype(np.float32, copy=False)
        if self.pointwise:
            cols = x32[:: self.sx, :: self.sy, :].reshape(-1, self.c_in)
        else:
            cols = self._im2col(self._pad(x32, self._xpad32))
        return (cols @ self.w_gemm32).reshape(self.output_shape)

    def _pad(self, x: np.ndarray, xp: np.ndarray | None = None) -> np.ndarray:
        if self.px == 0 and self.py == 0:
            return x
        xp = self._xpad if xp is None else xp
        xp[self.px : self.px + x.shape[0], self.py : self.py + x.shape[1], :] = x
        return xp

    def _im2col(self, xp: np.ndarray) -> np.ndarray:
        ox, oy, _ = self.output_shape
        s0, s1, s2 = xp.strides
        win = as_strided(
            xp,
            shape=(ox, oy, self.kx, self.ky, self.c_in),
            strides=(s0 * self.sx, s1 * self.sy, s0 * self.dx, s1 * self.dy, s2),
            writeable=False,
        )
        return win.reshape(ox * oy, self.kx * self.ky * self.c_in)

    def _depthwise(self, xp: np.ndarray) -> np.ndarray:
        ox, oy, c = self.output_shape
        out = np.zeros((ox, oy, c))
        for bx in range(self.kx):
            for ay in range(self.ky):
                x0, y0 = bx * self.dx, ay * self.dy
                sl = xp[
                    x0 : x0 + self.sx * (ox - 1) + 1 : self.sx, y0 : y0 + self.sy * (oy - 1) + 1 : self.sy, :
                ]
                out += sl * self.k[bx, ay, 0, :]
        return out

    def _scatter(self, x: np.ndarray) -> np.ndarray:
        xi, yi, ci = x.shape
        flat = x.reshape(xi * yi, ci)
        rows, cols = np.nonzero(flat)
        s = _sparse.csr_matrix((flat[rows, cols], (rows, cols)), shape=flat.shape)
        taps = np.asarray(s @ self.w_scatter).reshape(xi, yi, self.kx, self.ky, self.c_out)
        out = np.zeros(self.output_shape)
        for bx, ay, (ox0, ox1, ix0), (oy0, oy1, iy0) in self._taps:
            nx, ny = ox1 - ox0 + 1, oy1 - oy0 + 1
            out[ox0 : ox1 + 1, oy0 : oy1 + 1, :] += taps[
                ix0 : ix0 + self.sx * (nx - 1) + 1 : self.sx,
                iy0 : iy0 + self.sy * (ny - 1) + 1 : self.sy,
                bx,
                ay,
                :,
            ]
        return out


def clamp_signed(values: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Saturate to a signed `bits`-wide integer; returns (clamped, number of saturated entries). Without
    saturation that is `values` itself (no copy: a per-step pass saved on every graded stream)."""
    hi = (1 << (bits - 1)) - 1
    if values.size == 0 or (values.max() <= hi and values.min() >= -hi):  # two reductions, no temporaries
        return values, 0
    n = int(np.count_nonzero(values > hi)) + int(np.count_nonzero(values < -hi))
    return np.clip(values, -hi, hi), n


def fixed_conv(
    kernel: ConvKernel, x_int: np.ndarray, weight_exp: int, binary: bool, bits: int = 24,
    dtype: type = np.int64,
) -> tuple[np.ndarray, int]:
    """Integer convolution with mantissa weights, shifted by the layer exponent and saturated to `bits`
    (Loihi 2 synaptic accumulator); returns (values as `dtype`, number saturated).

    The accumulator holds exact integers in the float it was computed in (|terms| < 2^24 in float32,
    < 2^53 in float64), and the shift stays exact there: << e multiplies by 2^e, arithmetic >> e is
    floor(acc * 2^-e), and the saturation bound 2^(bits-1) - 1 is representable for bits <= 24."""
    acc = kernel.accumulate(x_int, binary=binary)
    if acc.dtype != np.float32 or bits > 24:
        acc = np.rint(acc.astype(np.float64, copy=False))
    if weight_exp:
        acc = acc * acc.dtype.type(2.0**weight_exp)
        if weight_exp < 0:
            np.floor(acc, out=acc)
    acc, n = clamp_signed(acc, bits)
    return acc.astype(dtype), n
