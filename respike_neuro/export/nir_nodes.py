"""One NIR node -> one numpy function over a whole sequence: the node semantics of the reference executor.

`build_evaluator` turns a node into an `Evaluator`, (T, B, *in_shape) -> (T, B, *out_shape);
stateless nodes fold time into the batch (one GEMM), neurons and delays loop over time. The node
equations, and why they are written from the NIR spec alone, are in `reference_executor`'s docstring;
`conv2d_nchw`/`pool2d_nchw` are also the numeric kernels the Lava-side tests check against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "V_INIT",
    "Evaluator",
    "NodeContext",
    "build_evaluator",
    "check_declared",
    "conv2d_nchw",
    "declared_shape",
    "describe_node",
    "pool2d_nchw",
]

# im2col buffers are built in chunks of samples so that one chunk stays below this size
_CONV_CHUNK_BYTES = 64 * 2**20
V_INIT = ("zero", "leak")

Evaluator = Callable[[np.ndarray], np.ndarray]  # (T, B, *in_shape) -> (T, B, *out_shape)


# --------------------------------------------------------------------------- numeric kernels


def conv2d_nchw(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """2-d cross-correlation of x (N, C_in, H, W) with weight (C_out, C_in/groups, kH, kW).

    padding is (top, bottom, left, right) zeros. im2col + one batched GEMM per chunk of samples:
        y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * x_pad[n, g*C_in/g + c, i*sh + u*dh, j*sw + v*dw]
    with g = o // (C_out/groups).
    """
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d needs x (N, C, H, W) and a 4-d weight, got {x.shape} and {weight.shape}")
    n, c, h, w = x.shape
    c_out, c_in_g, kh, kw = weight.shape
    if groups < 1 or c_out % groups or c != c_in_g * groups:
        raise ValueError(
            f"input has {c} channels but weight {weight.shape} with groups={groups} expects "
            f"{c_in_g * groups} (and C_out divisible by groups)"
        )
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, padding
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    hp, wp = h + pt + pb, w + pl + pr
    if hp < ekh or wp < ekw:
        raise ValueError(f"padded input {hp}x{wp} is smaller than the dilated kernel {ekh}x{ekw}")
    ho, wo = (hp - ekh) // sh + 1, (wp - ekw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if pt or pb or pl or pr else x
    g_out = c_out // groups
    wmat = weight.reshape(groups, g_out, c_in_g * kh * kw)
    out = np.empty((n, c_out, ho, wo), dtype=np.result_type(x, weight))
    chunk = max(1, _CONV_CHUNK_BYTES // max(1, c * kh * kw * ho * wo * out.itemsize))
    for s0 in range(0, n, chunk):
        xc = xp[s0 : s0 + chunk]
        m = xc.shape[0]
        win = sliding_window_view(xc, (ekh, ekw), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
        cols = win.reshape(m, groups, c_in_g, ho, wo, kh, kw).transpose(1, 2, 5, 6, 0, 3, 4)
        cols = cols.reshape(groups, c_in_g * kh * kw, m * ho * wo)
        res = np.matmul(wmat, cols)  # (groups, C_out/groups, m*ho*wo)
        out[s0 : s0 + m] = res.reshape(c_out, m, ho, wo).transpose(1, 0, 2, 3)
    if bias is not None:
        out += bias.reshape(1, c_out, 1, 1)
    return out


def pool2d_nchw(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    average: bool,
) -> np.ndarray:
    """Sum (or average) pooling of x (N, C, H, W) over kernel windows, zero padding (ph, pw).

    The average divides every window by kH*kW, padded zeros included (PyTorch's default,
    count_include_pad=True): AvgPool2d is SumPool2d scaled, as the two NIR nodes are defined.
    """
    if x.ndim != 4:
        raise ValueError(f"pooling needs x (N, C, H, W), got {x.shape}")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    if xp.shape[2] < kh or xp.shape[3] < kw:
        raise ValueError(f"padded input {xp.shape[2]}x{xp.shape[3]} is smaller than the kernel {kh}x{kw}")
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    out = win.sum(axis=(-2, -1))
    if average:
        out /= kh * kw
    return out


# --------------------------------------------------------------------------- parameter parsing


def _ints(value: Any, n: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int or a length-1/length-n sequence of ints -> n ints >= minimum."""
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or arr.size not in (1, n) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
    vals = tuple(int(v) for v in np.broadcast_to(arr, (n,)))
    if min(vals) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return vals


def _array(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"parameter {name} must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(dtype)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"parameter {name} contains non-finite values")
    return arr


def _padding_str(padding: Any) -> str | None:
    """The padding as a str if it is one (h5py may hand back bytes or a 0-d string array)."""
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO" and padding.size == 1:
        padding = padding.item()
    if isinstance(padding, bytes):
        padding = padding.decode("utf8")
    return padding if isinstance(padding, str) else None


def _conv_padding(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]):
    """NIR padding (int, ints, 'valid' or 'same') -> (before, after) per spatial axis.

    'same' follows PyTorch: total d*(k-1), the odd extra zero after; it requires stride 1
    (with stride > 1 the NIR output shape formula and PyTorch disagree, so it is rejected).
    """
    n = len(kernel)
    mode = _padding_str(padding)
    if mode == "valid":
        return [(0, 0)] * n
    if mode == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"padding='same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    if mode is not None:
        raise ValueError(f"padding must be an int, {n} ints, 'same' or 'valid', got {padding!r}")
    return [(p, p) for p in _ints(padding, n, "padding", 0)]


def _broadcast_param(param: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A neuron parameter must equal the per-sample shape or broadcast to it (e.g. a scalar)."""
    try:
        ok = np.broadcast_shapes(param.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"parameter {name} of shape {param.shape} does not fit the input shape {shape}")
    return param


# --------------------------------------------------------------------------- node evaluators


@dataclass(frozen=True)
class NodeContext:
    dt: float | None
    dtype: np.dtype
    v_init: str

    def need_dt(self) -> float:
        if self.dt is None:
            raise ValueError(
                "dt is required for this node: pass dt=... to run_graph or store graph.metadata['dt']"
            )
        return self.dt


def _fold(fn: Callable[[np.ndarray], np.ndarray]) -> Evaluator:
    """Stateless node: apply fn to (T*B, *shape) and unfold the time axis again."""

    def run(x: np.ndarray) -> np.ndarray:
        t, b = x.shape[:2]
        y = fn(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])

    return run


def _build_conv(node: nir.Conv1d | nir.Conv2d, ctx: NodeContext) -> Evaluator:
    weight = _array(node.weight, "weight", ctx.dtype)
    one_d = isinstance(node, nir.Conv1d)
    nd = 1 if one_d else 2
    if weight.ndim != nd + 2:
        axes = "K" if one_d else "kH, kW"
        raise ValueError(f"weight must be (C_out, C_in/groups, {axes}), got {weight.shape}")
    bias = None if node.bias is None else _array(node.bias, "bias", ctx.dtype)
    if bias is not None:
        if bias.size == 1 and weight.shape[0] != 1:
            bias = np.broadcast_to(bias.reshape(()), (weight.shape[0],))
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
    groups = _ints(node.groups, 1, "groups", 1)[0]
    stride = _ints(node.stride, nd, "stride", 1)
    dilation = _ints(node.dilation, nd, "dilation", 1)
    pads = _conv_padding(node.padding, weight.shape[2:], dilation, stride)
    if one_d:
        weight = weight[:, :, None, :]
        stride, dilation, pads = (1, *stride), (1, *dilation), [(0, 0), *pads]
    padding = (pads[0][0], pads[0][1], pads[1][0], pads[1][1])

    def conv(x: np.ndarray) -> np.ndarray:
        x4 = x[:, :, None, :] if one_d else x
        y = conv2d_nchw(x4, weight, bias, stride, padding, dilation, groups)
        return y[:, :, 0, :] if one_d else y

    return _fold(conv)


def _build_pool(node: nir.SumPool2d | nir.AvgPool2d, ctx: NodeContext) -> Evaluator:
    kernel = _ints(node.kernel_size, 2, "kernel_size", 1)
    stride = kernel if node.stride is None else _ints(node.stride, 2, "stride", 1)
    padding = _ints(node.padding, 2, "padding", 0)
    average = isinstance(node, nir.AvgPool2d)
    return _fold(lambda x: pool2d_nchw(x, kernel, stride, padding, average))


def _build_affine(node: nir.Affine | nir.Linear, ctx: NodeContext) -> Evaluator:
    weight = _array(node.weight, "weight", ctx.dtype)
    if weight.ndim < 2:
        raise ValueError(f"weight must be at least 2-d (..., out, in), got {weight.shape}")
    bias = _array(node.bias, "bias", ctx.dtype) if isinstance(node, nir.Affine) else None
    out_shape = weight.shape[:-1]
    if bias is not None and np.broadcast_shapes(bias.shape, out_shape) != out_shape:
        raise ValueError(f"bias of shape {bias.shape} does not fit the output shape {out_shape}")

    def affine(x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != weight.shape[-1]:
            n_in = weight.shape[-1]
            raise ValueError(f"input has {x.shape[-1]} features but weight {weight.shape} takes {n_in}")
        y = x @ weight.T if weight.ndim == 2 else np.matmul(weight, x[..., None])[..., 0]
        return y if bias is None else y + bias

    return affine


def _build_scale(node: nir.Scale, ctx: NodeContext) -> Evaluator:
    scale = _array(node.scale, "scale", ctx.dtype)
    return lambda x: x * _broadcast_param(scale, "scale", x.shape[2:])


def _build_flatten(node: nir.Flatten, ctx: NodeContext) -> Evaluator:
    start, end = int(node.start_dim), int(node.end_dim)

    def flatten(x: np.ndarray) -> np.ndarray:
        shape = x.shape[2:]  # NIR dims count without batch (and here without time)
        nd = len(shape)
        s, e = start + nd if start < 0 else start, end + nd if end < 0 else end
        if not 0 <= s <= e < nd:
            raise ValueError(f"start_dim={start}, end_dim={end} do not fit the input shape {shape}")
        new = (*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :])
        return x.reshape(*x.shape[:2], *new)

    return flatten


def _build_threshold(node: nir.Threshold, ctx: NodeContext) -> Evaluator:
    thr = _array(node.threshold, "threshold", ctx.dtype)
    return lambda x: (x > _broadcast_param(thr, "threshold", x.shape[2:])).astype(ctx.dtype)


def _build_neuron(node: nir.NIRNode, ctx: NodeContext) -> Evaluator:
    """LIF, IF, LI, I: forward Euler, one loop over time, vectorised over batch and neurons."""
    dt = ctx.need_dt()
    leaky = isinstance(node, (nir.LIF, nir.LI))
    spiking = isinstance(node, (nir.LIF, nir.IF))
    r = _array(node.r, "r", ctx.dtype)
    params = {"r": r}
    rate = v_leak = thr = v_reset = None
    if leaky:
        tau = _array(node.tau, "tau", ctx.dtype)
        if np.any(tau <= 0):
            raise ValueError("parameter tau must be > 0")
        rate = dt / tau  # the Euler factor dt/tau
        v_leak = _array(node.v_leak, "v_leak", ctx.dtype)
        params.update(tau=rate, v_leak=v_leak)
    if spiking:
        thr = _array(node.v_threshold, "v_threshold", ctx.dtype)
        v_reset = _array(0.0 if node.v_reset is None else node.v_reset, "v_reset", ctx.dtype)
        params.update(v_threshold=thr, v_reset=v_reset)

    def run(x: np.ndarray) -> np.ndarray:
        for name, value in params.items():
            _broadcast_param(value, name, x.shape[2:])
        drive = r * x  # r * I for every timestep
        v0 = v_leak if leaky and ctx.v_init == "leak" else np.zeros((), ctx.dtype)
        v = np.array(np.broadcast_to(v0, x.shape[1:]), dtype=ctx.dtype)
        out = np.empty_like(drive)
        for t in range(x.shape[0]):
            v = v + rate * ((v_leak - v) + drive[t]) if leaky else v + dt * drive[t]
            if spiking:
                z = v > thr
                out[t] = z
                v = np.where(z, v_reset, v)
            else:
                out[t] = v
        return out

    return run


def _build_delay(node: nir.Delay, ctx: NodeContext) -> Evaluator:
    dt = ctx.need_dt()
    delay = _array(node.delay, "delay", np.float64)
    steps = delay / dt
    rounded = np.rint(steps)
    if np.any(rounded < 0) or np.any(np.abs(steps - rounded) > 1e-6 * np.maximum(1.0, np.abs(steps))):
        raise ValueError(f"delay must be a non-negative whole number of steps dt={dt}, got {delay} s")
    steps = rounded.astype(np.int64)

    def run(x: np.ndarray) -> np.ndarray:
        st = np.broadcast_to(_broadcast_param(steps, "delay", x.shape[2:]), x.shape[2:])
        out = np.zeros_like(x)
        t_len = x.shape[0]
        for d in np.unique(st):
            if d < t_len:
                mask = st == d
                out[d:, :, mask] = x[: t_len - d, :, mask]
        return out

    return run


def _identity(x: np.ndarray) -> np.ndarray:
    return x


_BUILDERS: dict[type, Callable[[Any, NodeContext], Evaluator]] = {
    nir.Conv1d: _build_conv,
    nir.Conv2d: _build_conv,
    nir.SumPool2d: _build_pool,
    nir.AvgPool2d: _build_pool,
    nir.Affine: _build_affine,
    nir.Linear: _build_affine,
    nir.Scale: _build_scale,
    nir.Flatten: _build_flatten,
    nir.Threshold: _build_threshold,
    nir.LIF: _build_neuron,
    nir.IF: _build_neuron,
    nir.LI: _build_neuron,
    nir.I: _build_neuron,
    nir.Delay: _build_delay,
    nir.Input: lambda node, ctx: _identity,
    nir.Output: lambda node, ctx: _identity,
    nir.ir.graph.Identity: lambda node, ctx: _identity,
}


def describe_node(key: str, node: nir.NIRNode) -> str:
    return f"node {key!r} ({type(node).__name__})"


def build_evaluator(key: str, node: nir.NIRNode, ctx: NodeContext) -> Evaluator:
    builder = _BUILDERS.get(type(node))
    if builder is None:
        why = {
            nir.NIRGraph: "nested graphs are not supported",
            nir.CubaLIF: "the spec leaves the order of the current and voltage updates open",
            nir.CubaLI: "the spec leaves the order of the current and voltage updates open",
        }.get(type(node), "this node type is not implemented")
        raise NotImplementedError(
            f"{describe_node(key, node)} is not supported by the reference executor: {why}"
        )
    try:
        return builder(node, ctx)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{describe_node(key, node)}: {err}") from err


def declared_shape(types: Any, port: str) -> tuple[int, ...] | None:
    """The shape a node declares for a port, or None when undeclared or scalar (broadcasting)."""
    if not isinstance(types, dict) or types.get(port) is None:
        return None
    shape = tuple(int(s) for s in np.atleast_1d(np.asarray(types[port])))
    return shape or None


def check_declared(key: str, node: nir.NIRNode, port: str, shape: tuple[int, ...]) -> None:
    types = node.input_type if port == "input" else node.output_type
    declared = declared_shape(types, port)
    if declared is None:
        return
    if isinstance(node, (nir.Conv1d, nir.Conv2d)) and port == "input":
        # nir declares C_in/groups as the input channel count; the conv itself checks channels
        declared, shape = declared[1:], shape[1:]
    if declared != shape:
        raise ValueError(
            f"{describe_node(key, node)} {'receives' if port == 'input' else 'produces'} "
            f"shape {shape} but declares {port} shape {declared}"
        )
