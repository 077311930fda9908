"""The fast ProcessModels against Lava's stock ones for the same Process, both run by Lava, step by step."""

import numpy as np
import pytest

from respike_neuro.sim.lifecycle import import_lava_runtime

import_lava_runtime()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402

from respike_neuro.sim.procs.models import FastLifResetModelBitAcc, FastLifResetModelFloat  # noqa: E402

STEPS = 10
SHAPE = (6, 5, 4)


def _run_lif(model, fixed: bool, a_in: np.ndarray, **params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spikes, u and v after every step of one LIFReset run with `model`."""
    src = Source(data=a_in.reshape(-1, STEPS))
    lif = LIFReset(shape=(a_in[..., 0].size,), reset_interval=4, reset_offset=1, **params)
    sink = Sink(shape=(a_in[..., 0].size,), buffer=STEPS)
    src.s_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    tag = "fixed_pt" if fixed else "floating_pt"
    cfg = Loihi2SimCfg(select_tag=tag, exception_proc_model_map={lif: model})
    us, vs = [], []
    try:
        for _ in range(STEPS):
            lif.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            us.append(lif.u.get().copy())
            vs.append(lif.v.get().copy())
        spikes = sink.data.get().copy()
    finally:
        lif.stop()
    return spikes.T, np.stack(us), np.stack(vs)


@pytest.mark.parametrize("du", [4095, 1000])  # a current that decays fully in one step (ReSpike), and not
def test_fast_fixed_lif_is_bit_identical_to_lavas(rng, children, du):
    n = int(np.prod(SHAPE))
    a_in = rng.normal(scale=3000, size=(n, STEPS)).round().astype(np.int32)
    a_in[: n // 8] = rng.integers(1 << 17, 1 << 18, size=(n // 8, STEPS))  # (a << 6) passes 2**23: wraps
    params = dict(du=du, dv=777, vth=3000, bias_mant=rng.integers(-4096, 4096, size=n),
                  bias_exp=rng.integers(0, 4, size=n))
    stock = _run_lif(PyLifResetModelBitAcc, True, a_in, **params)
    fast = _run_lif(FastLifResetModelBitAcc, True, a_in, **params)
    for name, s, f in zip(("spikes", "u", "v"), stock, fast, strict=True):
        np.testing.assert_array_equal(f, s, err_msg=name)
    spikes, u, v = stock
    assert 0.05 < spikes.mean() < 0.95  # the comparison is not vacuous
    assert np.any(np.abs(v) == (1 << 23) - 1)  # saturation was exercised
    assert np.any((a_in[: n // 8].T > 0) & (u[:, : n // 8] < 0))  # and the 24-bit wrap of u
    assert children() == []


@pytest.mark.parametrize("du", [1.0, 0.3])
def test_fast_float_lif_is_bit_identical_to_lavas(rng, children, du):
    n = int(np.prod(SHAPE))
    a_in = rng.normal(scale=1.0, size=(n, STEPS))
    params = dict(du=du, dv=0.75, vth=1.0, bias_mant=rng.normal(scale=0.2, size=n))
    stock = _run_lif(PyLifResetModelFloat, False, a_in, **params)
    fast = _run_lif(FastLifResetModelFloat, False, a_in, **params)
    for name, s, f in zip(("spikes", "u", "v"), stock, fast, strict=True):
        np.testing.assert_array_equal(f, s, err_msg=name)
    assert 0.05 < stock[0].mean() < 0.95
    assert children() == []


def test_fast_models_keep_the_stock_models_tags():
    """Selectable by Lava's own tags (a run config's select_tag), plus 'respike_fast', each tag once."""
    assert FastLifResetModelFloat.tags == ["floating_pt", "respike_fast"]
    assert FastLifResetModelBitAcc.tags == ["bit_accurate_loihi", "fixed_pt", "respike_fast"]
    assert PyLifResetModelBitAcc.tags == ["bit_accurate_loihi", "fixed_pt"]  # the stock model untouched
