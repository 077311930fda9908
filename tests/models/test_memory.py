"""Lossless training-memory savings (models/memory.py): the same forward, spikes and gradients as
plain torch, with less kept for the backward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from respike_tests_helpers import lively_model
from torch import nn

from respike_neuro.models.fusion import GEGLU
from respike_neuro.models.memory import avg_pool2d, pack_bits, plain_backward, spike_conv2d, unpack_bits
from respike_neuro.models.neuron import LIF


def saved_bytes(fn, params=()) -> tuple[int, dict[torch.dtype, int]]:
    """Bytes of the tensors autograd saves while fn() runs (each storage once, not counting
    parameters nor views of `params`), total and by dtype."""
    seen: set[int] = {p.untyped_storage().data_ptr() for p in params}
    by_dtype: dict[torch.dtype, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if not isinstance(t, nn.Parameter) and ptr not in seen:
            seen.add(ptr)
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(by_dtype.values()), by_dtype


@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 8, 4, 4), (1,)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pack_bits_round_trip(shape, channels_last):
    spikes = (torch.rand(shape, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    if channels_last and spikes.dim() == 4:
        spikes = spikes.contiguous(memory_format=torch.channels_last)
    packed = pack_bits(spikes)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-spikes.numel() // 8)
    assert torch.equal(pack_bits(spikes, numpy=False), packed)  # the torch ops (GPUs) pack alike
    for numpy in (True, False):
        back = unpack_bits(packed, spikes.shape, spikes.stride(), spikes.dtype, numpy=numpy)
        assert torch.equal(back, spikes) and back.stride() == spikes.stride()


def test_pack_bits_follows_memory_order():
    """A channels-last tensor is packed as it lies in memory (NHWC), so flattening it is a view."""
    spikes = (torch.rand(2, 5, 3, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    nhwc = spikes.contiguous(memory_format=torch.channels_last)
    assert torch.equal(pack_bits(nhwc), pack_bits(spikes.permute(0, 2, 3, 1).contiguous()))
    assert not torch.equal(pack_bits(nhwc), pack_bits(spikes))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_spike_conv_equals_conv_and_keeps_one_bit(bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, stride=2, padding=1, bias=bias)
    spikes = (torch.rand(4, 6, 9, 9) > 0.7).float()
    if channels_last:
        spikes = spikes.contiguous(memory_format=torch.channels_last)
    grads = []
    for lean in (False, True):
        x = spikes.clone().requires_grad_()
        conv.zero_grad()
        with plain_backward(not lean):
            y, nbytes, by_dtype = saved_bytes(lambda x=x: spike_conv2d(conv, x))
        y.pow(2).sum().backward()
        grads.append((y, x.grad, conv.weight.grad.clone(), conv.bias.grad.clone() if bias else None))
        if lean:
            assert set(by_dtype) == {torch.uint8} and nbytes == spikes.numel() // 8
        else:
            assert by_dtype[torch.float32] == 4 * spikes.numel()
    for a, b in zip(*grads):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kernel", [2, 4])
def test_avg_pool_equals_avg_pool_and_saves_nothing(kernel):
    torch.manual_seed(0)
    x0 = torch.randn(3, 4, 14, 14)
    runs = []
    for lean in (False, True):
        x = x0.clone().requires_grad_()
        with plain_backward(not lean):
            y, nbytes, _ = saved_bytes(lambda x=x: avg_pool2d(x, kernel))
        (y * torch.arange(y.numel()).view_as(y)).sum().backward()
        runs.append((y, x.grad))
        assert (nbytes == 0) is lean
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    torch.testing.assert_close(runs[1][0], F.avg_pool2d(x0, kernel), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_geglu_keeps_half_and_gives_the_same_output_and_gradients(dtype):
    torch.manual_seed(0)
    ff = GEGLU(24).to(dtype)
    x0 = torch.randn(3, 10, 24, dtype=dtype)
    runs = []
    for lean in (False, True):
        ff.zero_grad()
        x = x0.clone().requires_grad_()
        with plain_backward(not lean):
            y, nbytes, _ = saved_bytes(lambda x=x: ff(x), ff.parameters())
        (y * torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)).sum().backward()
        runs.append((y, nbytes, [x.grad] + [p.grad.clone() for p in ff.parameters()]))
    (y0, bytes0, grads0), (y1, bytes1, grads1) = runs
    torch.testing.assert_close(y0, y1, rtol=0, atol=0)  # the forward is plain torch's, op for op
    for a, b in zip(grads0, grads1, strict=True):
        torch.testing.assert_close(a, b)  # float rounding: the weight gradient's sums may be reordered
    width = x0.numel() // 24
    # per token, plain keeps x, [a, gate], GELU(gate) and the product: (1 + 8 + 4 + 4) * 24 values;
    # lean keeps x and [a, gate]
    assert bytes0 == x0.element_size() * width * 24 * 17
    assert bytes1 == x0.element_size() * width * 24 * 9


def test_inference_and_autocast_run_the_plain_ops():
    conv = nn.Conv2d(2, 2, 3, padding=1)
    x = torch.ones(1, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        assert spike_conv2d(conv, x).grad_fn is None
    assert type(spike_conv2d(conv, x).grad_fn).__name__ == "_SpikeConv2dBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(spike_conv2d(conv, x).grad_fn).__name__ == "ConvolutionBackward0"
    conv.register_forward_hook(lambda *a: None)  # a hooked conv runs as itself
    assert type(spike_conv2d(conv, x).grad_fn).__name__ == "ConvolutionBackward0"


@pytest.mark.parametrize("watch_spikes", [True, False])
@pytest.mark.parametrize("bn_stats", ["per_timestep", "folded"])
def test_whole_model_same_spikes_logits_gradients_and_bn_statistics_with_less_saved(bn_stats, watch_spikes):
    """watch_spikes: hooks record every LIF's spikes (a hooked LIF2 runs plainly, as a hooked conv
    does); without hooks BN1 + LIF2 are recomputed in backward, and the bit-identical logits, the
    gradients and the BN running statistics are what show it."""
    runs = []
    for lean in (False, True):
        model = lively_model(seed=3).train()
        model.snn.bn_stats = bn_stats
        for block in (b for stage in model.snn.stages for b in stage):
            block.bn_stats = bn_stats
        spikes = []
        for m in model.modules():
            if isinstance(m, LIF) and watch_spikes:
                m.register_forward_hook(lambda _m, _i, out, _s=spikes: _s.append(out.detach().clone()))
        clip = 0.5 * torch.randn(2, 8, 3, 64, 64, generator=torch.Generator().manual_seed(7))
        with plain_backward(not lean):
            logits, nbytes, by_dtype = saved_bytes(lambda model=model, clip=clip: model(clip))
            logits.logsumexp(-1).sum().backward()
        runs.append((model, logits, spikes, nbytes, by_dtype))
    (plain, logits0, spikes0, bytes0, _), (lean, logits1, spikes1, bytes1, dtypes1) = runs
    if watch_spikes:
        assert sum(s.numel() for s in spikes0) > 0 and any(s.any() for s in spikes0)
    for a, b in zip(spikes0, spikes1, strict=True):
        assert torch.equal(a, b)  # identical spikes
    torch.testing.assert_close(logits0, logits1, rtol=0, atol=0)
    for (name, a), b in zip(plain.named_parameters(), lean.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    for (name, a), b in zip(plain.named_buffers(), lean.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # recomputing BN left them alone
    packed = dtypes1.get(torch.uint8, 0)
    assert packed > 0  # spike conv inputs kept as 1 bit instead of 32, pooled inputs not at all
    assert bytes1 <= bytes0 - 31 * packed
    if not watch_spikes:  # nor any LIF2 membrane (float32, as many values as LIF2's spikes)
        assert bytes1 <= bytes0 - 31 * packed - 4 * _lif2_values(clip)


def _lif2_values(clip: torch.Tensor) -> int:
    model, sizes = lively_model(seed=3).train(), []
    for block in (b for stage in model.snn.stages for b in stage):
        block.lif2.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
    with torch.no_grad():
        model(clip)
    return sum(sizes)


@pytest.mark.parametrize("lean", [False, True])
def test_channels_last_model_trains_as_the_contiguous_one(lean):
    """train.memory_format channels_last lays the same network out NHWC: the per-timestep BN, the
    1-bit spike inputs (packed in memory order), the LIF and the fusion's token views follow the
    layout, so spikes, logits, gradients and BN statistics are the contiguous model's (float64:
    conv rounding cannot flip a spike)."""
    runs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model = lively_model(seed=3).double().train().to(memory_format=layout)
        spikes = []
        for m in model.modules():
            if isinstance(m, LIF) and m is not model.snn.stages[0][0].lif2:  # one LIF2 runs lean
                m.register_forward_hook(lambda _m, _i, out, _s=spikes: _s.append(out.detach().clone()))
        g = torch.Generator().manual_seed(7)
        clip = 0.5 * torch.randn(2, 8, 3, 64, 64, dtype=torch.float64, generator=g)
        with plain_backward(not lean):
            logits = model(clip)
            logits.logsumexp(-1).sum().backward()
        runs.append((model, logits, spikes))
    (dense, logits0, spikes0), (nhwc, logits1, spikes1) = runs
    assert nhwc.snn.stages[0][0].conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert len(spikes0) > 10 and all(torch.equal(a, b) for a, b in zip(spikes0, spikes1, strict=True))
    torch.testing.assert_close(logits0, logits1, rtol=1e-12, atol=1e-12)
    for (name, a), b in zip(dense.named_parameters(), nhwc.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)
    for (name, a), b in zip(dense.named_buffers(), nhwc.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
