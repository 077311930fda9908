"""Cross-attention fusion: one context per segment serving all its timesteps."""

import pytest
import torch

from respike_neuro.models.fusion import CrossAttentionFusion


@pytest.mark.parametrize("pool", [1, 2])
def test_one_context_per_segment_equals_a_copy_per_timestep(pool):
    """The S timesteps of a segment attend to its context as one query sequence: outputs and every
    gradient equal those of the context repeated for each timestep (the layout before)."""
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(64, 32, pool=pool).double()
    torch.nn.init.normal_(fusion.proj_out.weight, std=0.1)  # zero-initialised: would hide the attention
    s, m = 3, 4
    x = torch.randn(s * m, 64, 8, 8, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(m, 32, 8, 8, dtype=torch.float64, requires_grad=True)
    shared = fusion(x, ctx)
    repeated = fusion(x, ctx.repeat(s, 1, 1, 1))  # row s*M + m is context m: time-major
    torch.testing.assert_close(shared, repeated, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(shared)
    params = list(fusion.parameters())
    g_shared = torch.autograd.grad((shared * w).sum(), [x, ctx, *params])
    g_repeated = torch.autograd.grad((repeated * w).sum(), [x, ctx, *params])
    for a, b in zip(g_shared, g_repeated, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rejects_rows_that_are_not_whole_timesteps():
    fusion = CrossAttentionFusion(64, 32)
    with pytest.raises(ValueError, match="not whole timesteps"):
        fusion(torch.zeros(7, 64, 4, 4), torch.zeros(2, 32, 4, 4))
