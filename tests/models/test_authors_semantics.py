"""Rung 0 without the authors' code: our train-mode ReSpike against the authors' per-timestep loop.

The reference below is the structure of their forward (a Python loop over timesteps, every conv,
BatchNorm and fusion called once per step, spikingjelly's LIFNode in its own units with the ATan
surrogate on its own membrane), built from our model's modules. Same weights must give the same
train-mode logits, BatchNorm running statistics and gradients; `benchmarks/authors_equivalence.py`
makes the same comparison against their actual code.
"""

import copy

import torch
from respike_tests_helpers import AuthorsATan

from respike_neuro.config import small
from respike_neuro.data.clips import split_key_residual
from respike_neuro.models.hybrid import build_model


class _LIFNode:
    """LIFNode(tau=4/3, v_threshold=1, v_reset=0, detach_reset=True), single-step."""

    def __init__(self):
        self.v = 0.0

    def __call__(self, x):
        self.v = self.v + (x - self.v) / (4.0 / 3.0)
        spike = AuthorsATan.apply(self.v - 1.0)
        self.v = self.v * (1.0 - spike.detach())
        return spike


def authors_loop(model, clip):
    """Their forward, step by step: per-timestep BN calls, per-timestep fusion, mean over segments."""
    cfg, snn = model.cfg, model.snn
    key, residual = split_key_residual(clip, cfg.stride)
    b, n = key.shape[:2]
    key, residual = key.flatten(0, 1), residual.flatten(0, 1)
    feats, x = [], model.ann.stem(key)
    for stage in model.ann.stages:
        x = stage(x)
        feats.append(x)
    nodes = {id(m): _LIFNode() for m in snn.modules() if type(m).__name__ == "LIF"}
    outs = []
    for t in range(residual.shape[1]):
        x = snn.stem(residual[:, t])
        for k, stage in enumerate(snn.stages):
            for block in stage:
                out = block.conv1(nodes[id(block.lif1)](x))
                out = block.conv2(nodes[id(block.lif2)](out))
                x = out + (x if block.shortcut is None else block.shortcut(x))
            x = model.fusions[k](x, feats[k])
        outs.append(x)
    snn_vec = torch.stack(outs).mean(0).mean((-2, -1))
    logits = model.head(torch.cat([feats[-1].mean((-2, -1)), snn_vec], dim=-1))
    return logits.view(b, n, -1).mean(1)


def _models():
    torch.manual_seed(0)
    model = build_model(small(resolution=64, snn_width=16)).double().train()
    with torch.no_grad():  # non-zero proj_out so the fusion paths carry gradient
        for fusion in model.fusions:
            fusion.proj_out.weight.normal_(0.0, 0.05)
    return model, copy.deepcopy(model)


def test_train_mode_forward_statistics_and_gradients_equal_the_authors_loop():
    ours, ref = _models()
    torch.manual_seed(1)
    clip = torch.randn(2, 8, 3, 64, 64, dtype=torch.float64)
    labels = torch.tensor([3, 7])
    l_ours, l_ref = ours(clip), authors_loop(ref, clip)
    torch.testing.assert_close(l_ours, l_ref, rtol=1e-10, atol=1e-12)
    for (name, a), b in zip(ours.named_buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    torch.nn.functional.cross_entropy(l_ours, labels).backward()
    torch.nn.functional.cross_entropy(l_ref, labels).backward()
    snn_grad = 0.0
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-11, msg=name)
        snn_grad += a.grad.abs().sum().item() if name.startswith("snn.") else 0.0
    assert snn_grad > 0  # the SNN's surrogate gradients are part of the comparison


def test_time_folded_statistics_are_a_different_network_in_training_only():
    ours, ref = _models()
    folded = build_model(small(resolution=64, snn_width=16, snn_bn_stats="folded")).double().train()
    folded.load_state_dict(ours.state_dict())
    clip = torch.randn(2, 8, 3, 64, 64, dtype=torch.float64)
    assert (folded(clip) - authors_loop(ref, clip)).abs().max() > 1e-3
    folded.load_state_dict(ours.state_dict())  # the same running statistics
    folded.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(clip), ours(clip), rtol=1e-12, atol=1e-12)
