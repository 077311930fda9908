"""Small contract-conforming ReSpike spiking-branch NIR graphs with random weights (numpy + nir only).

They follow docs/nir-contract.md exactly (node keys, BN-folded convs with bias, per-neuron LIF arrays,
AvgPool2d+1x1 downsample shortcut, Scale(ones) junctions, named ports, metadata), so the Lava mapper,
its tests, the CLI demo and the speed benchmark can run before/without a trained checkpoint.
"""

from __future__ import annotations

import json

import numpy as np


def _lif(nir, shape, beta: float, theta: float, dt: float):
    ones = np.ones(shape)
    return nir.LIF(
        tau=ones * dt / (1.0 - beta),
        r=ones / (1.0 - beta),
        v_leak=0 * ones,
        v_threshold=ones * theta,
        v_reset=0 * ones,
    )


def build_contract_graph(
    *,
    input_hw: tuple[int, int] = (16, 16),
    channels: tuple[int, ...] = (4, 8),
    blocks: tuple[int, ...] = (1, 1),
    strides: tuple[int, ...] | None = None,
    hybrid: bool = False,
    beta: float = 0.25,
    theta: float = 4.0 / 3.0,
    dt: float = 1e-4,
    timesteps: int = 3,
    weight_gain: float = 1.5,
    seed: int = 0,
):
    """A random MS-ResNet spiking branch as a nir.NIRGraph.

    `strides[i]` is the stride of stage i's first block (default 1 for stage 1, 2 after); a block gets a
    downsample shortcut (AvgPool2d k2 s2 + Conv1x1) when its stride or width changes, else identity.
    `hybrid=True` adds stage{k}_out Outputs and stage{k+1}_in Inputs between every pair of stages.
    """
    import nir

    if len(channels) != len(blocks):
        raise ValueError(f"channels {channels} and blocks {blocks} must have the same length")
    strides = tuple(strides) if strides is not None else (1,) + (2,) * (len(channels) - 1)
    if len(strides) != len(channels) or any(s not in (1, 2) for s in strides):
        raise ValueError(f"strides must be 1 or 2 per stage, got {strides}")
    rng = np.random.default_rng(seed)
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    h, w = input_hw
    nodes["residual_in"] = nir.Input(input_type={"input": np.array([3, h, w])})
    hw = _conv(nir, nodes, rng, weight_gain, "stem.conv", 3, channels[0], 3, 2, 1, (h, w))
    edges.append(("residual_in", "stem.conv"))
    src, c_prev = "stem.conv", channels[0]
    stage_shapes = {}
    for i, (c, nb) in enumerate(zip(channels, blocks), start=1):
        if hybrid and i > 1:
            nodes[f"stage{i - 1}_out"] = nir.Output(output_type={"output": np.array([c_prev, *hw])})
            edges.append((src, f"stage{i - 1}_out"))
            nodes[f"stage{i}_in"] = nir.Input(input_type={"input": np.array([c_prev, *hw])})
            src = f"stage{i}_in"
        src, hw = _add_stage(
            nir, nodes, edges, rng, weight_gain, beta, theta, dt, src, c_prev, hw, i, c, nb, strides[i - 1]
        )
        c_prev = c
        stage_shapes[f"stage{i}"] = [c, *hw]
    n = len(channels)
    nodes[f"stage{n}_out"] = nir.Output(output_type={"output": np.array([c_prev, *hw])})
    edges.append((src, f"stage{n}_out"))
    meta = _metadata(
        dt,
        beta,
        theta,
        timesteps,
        stage_shapes=json.dumps(stage_shapes),
        model_config=json.dumps({"demo": True, "seed": seed, "hybrid": hybrid}),
    )
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _metadata(dt: float, beta: float, theta: float, timesteps: int, **extra: str) -> dict:
    """The graph metadata the exporter writes (docs/nir-contract.md), for random demo graphs."""
    return {
        "dt": dt,
        "beta": beta,
        "theta": theta,
        "reset": "zero, same step",
        "stride": timesteps + 1,
        "timesteps_per_segment": timesteps,
        **extra,
        "format_version": "1",
    }


def _conv(nir, nodes, rng, gain, key, c_in, c_out, k, stride, pad, hw):
    w = rng.normal(0.0, gain * np.sqrt(2.0 / (c_in * k * k)), size=(c_out, c_in, k, k))
    b = rng.normal(0.0, 0.2, size=c_out)
    nodes[key] = nir.Conv2d(
        input_shape=hw, weight=w, stride=stride, padding=pad, dilation=1, groups=1, bias=b
    )
    return ((hw[0] + 2 * pad - k) // stride + 1, (hw[1] + 2 * pad - k) // stride + 1)


def _add_stage(nir, nodes, edges, rng, gain, beta, theta, dt, src, c_prev, hw, i, c, nb, stride):
    """Blocks layer{i}.0..nb-1 after `src`; returns (last junction key, its spatial size)."""
    for j in range(nb):
        s = stride if j == 0 else 1
        p = f"layer{i}.{j}"
        nodes[f"{p}.lif1"] = _lif(nir, (c_prev, *hw), beta, theta, dt)
        edges.append((src, f"{p}.lif1"))
        hw2 = _conv(nir, nodes, rng, gain, f"{p}.conv1", c_prev, c, 3, s, 1, hw)
        edges.append((f"{p}.lif1", f"{p}.conv1"))
        nodes[f"{p}.lif2"] = _lif(nir, (c, *hw2), beta, theta, dt)
        edges.append((f"{p}.conv1", f"{p}.lif2"))
        _conv(nir, nodes, rng, gain, f"{p}.conv2", c, c, 3, 1, 1, hw2)
        edges.append((f"{p}.lif2", f"{p}.conv2"))
        nodes[f"{p}.out"] = nir.Scale(scale=np.ones((c, *hw2)))
        edges.append((f"{p}.conv2", f"{p}.out"))
        if s != 1 or c != c_prev:
            sc_src = src
            if s == 2:
                nodes[f"{p}.shortcut.pool"] = nir.AvgPool2d(
                    kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
                )
                edges.append((src, f"{p}.shortcut.pool"))
                sc_src = f"{p}.shortcut.pool"
            _conv(nir, nodes, rng, gain, f"{p}.shortcut.conv", c_prev, c, 1, 1, 0, hw2)
            edges.append((sc_src, f"{p}.shortcut.conv"))
            edges.append((f"{p}.shortcut.conv", f"{p}.out"))
        else:
            edges.append((src, f"{p}.out"))
        src, c_prev, hw = f"{p}.out", c, hw2
    return src, hw


def build_stage_graph(
    stage: int,
    *,
    c_in: int,
    channels: int,
    hw: tuple[int, int],
    blocks: int = 2,
    stride: int = 1,
    beta: float = 0.25,
    theta: float = 4.0 / 3.0,
    dt: float = 1e-4,
    timesteps: int = 3,
    weight_gain: float = 1.5,
    seed: int = 0,
):
    """One hybrid-style stage alone: Input stage{k}_in (c_in, *hw) -> blocks -> Output stage{k}_out."""
    import nir

    rng = np.random.default_rng(seed)
    nodes: dict = {f"stage{stage}_in": nir.Input(input_type={"input": np.array([c_in, *hw])})}
    edges: list[tuple[str, str]] = []
    src, hw2 = _add_stage(
        nir,
        nodes,
        edges,
        rng,
        weight_gain,
        beta,
        theta,
        dt,
        f"stage{stage}_in",
        c_in,
        tuple(hw),
        stage,
        channels,
        blocks,
        stride,
    )
    nodes[f"stage{stage}_out"] = nir.Output(output_type={"output": np.array([channels, *hw2])})
    edges.append((src, f"stage{stage}_out"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_metadata(dt, beta, theta, timesteps))
