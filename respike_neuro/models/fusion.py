"""Multi-scale cross-attention fusion (paper Sec. 4.3), after each SNN stage, on the host.

The authors reuse Stable Diffusion's SpatialTransformer; built here from its description:
    h = proj_in(GroupNorm(x))                      -> tokens (N, HW, D)
    h = h + SelfAttn(LN(h))
    h = h + CrossAttn(LN(h), ANN tokens)           (k, v = Linear(C_ann -> D): the "channel reduction")
    h = h + FF(LN(h))                              (GEGLU: a * GELU(b), [a, b] = Linear(D, 8D))
    out = x + proj_out(h)                          (proj_out zero-initialised: starts as identity)
heads = C / 32, dim_head = 32, no biases on q/k/v, no norm on the context, no positional terms.
"Downsample" variant: the SNN map and the ANN context are AvgPool(p)-ed first and the fused map
is bilinearly upsampled by p after (p = 4, 2, 1, 1 at 224^2), so each stage attends over at most
196 tokens. The whole fused output is upsampled, exactly as the authors do.
The same ANN context (the segment's key frame) serves every timestep of the segment: its keys and
values are computed once, and the segment's timesteps attend to them as one sequence of queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from respike_neuro.models.memory import avg_pool2d, geglu_out


class Attention(nn.Module):
    def __init__(self, dim: int, *, heads: int, head_dim: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (S*M, L, D) and context (M, L', D') or None (self-attention): the S timesteps of sequence m
        (rows s*M + m, time-major) attend to context m as one query sequence of S*L tokens, the same
        softmax per query as S copies of the context would give, with keys and values computed once."""
        if context is None:
            q, k, v = (self.split_heads(f(x)) for f in (self.to_q, self.to_k, self.to_v))
            return self.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
        s, (m, length) = timesteps(x, context), (context.shape[0], x.shape[1])
        queries = self.to_q(x).view(s, m, length, -1).transpose(0, 1).reshape(m, s * length, -1)
        q, k, v = (self.split_heads(t) for t in (queries, self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (M, S*L, heads, head_dim)
        out = out.reshape(m, s, length, -1).transpose(0, 1).reshape(s * m, length, -1)
        return self.to_out(out)

    def attention_map(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Softmax weights (S*M, heads, L_query, L_context), for visualisation."""
        context = context.repeat(timesteps(x, context), 1, 1)
        q, k = self.split_heads(self.to_q(x)), self.split_heads(self.to_k(context))
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)


def timesteps(x: torch.Tensor, context: torch.Tensor) -> int:
    """S for an SNN input of S*M rows (time-major) and a context of M rows, one per sequence."""
    if context.shape[0] == 0 or x.shape[0] % context.shape[0]:
        raise ValueError(
            f"fusion: the SNN input's {x.shape[0]} rows are not whole timesteps of the context's "
            f"{context.shape[0]} sequences"
        )
    return x.shape[0] // context.shape[0]


class GEGLU(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim * mult * 2)
        self.out = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return geglu_out(self.out, self.proj(x))  # out(a * GELU(gate)), [a, gate] = proj(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, *, heads: int, head_dim: int, context_dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads=heads, head_dim=head_dim)
        self.cross_attn = Attention(dim, heads=heads, head_dim=head_dim, context_dim=context_dim)
        self.ff = GEGLU(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class CrossAttentionFusion(nn.Module):
    """Fuses one SNN stage output (S*N, C, H, W), S timesteps time-major, with ANN features
    (N, C_ann, H', W'): each sequence's context serves all its timesteps (S = 1: one each)."""

    def __init__(self, channels: int, context_channels: int, *, head_dim: int = 32, pool: int = 1) -> None:
        super().__init__()
        heads = max(1, channels // head_dim)
        inner = heads * head_dim
        self.pool = pool
        self.norm = nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.block = TransformerBlock(inner, heads=heads, head_dim=head_dim, context_dim=context_channels)
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def tokens(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled SNN map and ANN context as token sequences (N, L, C)."""
        if self.pool > 1:
            x, context = avg_pool2d(x, self.pool), avg_pool2d(context, self.pool)  # saves no activation
        return x, context.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or context.dim() != 4:
            raise ValueError(
                f"fusion expects x (S*N, C, H, W) and context (N, C_ann, H', W'), got "
                f"{tuple(x.shape)} and {tuple(context.shape)}"
            )
        timesteps(x, context)
        x, ctx = self.tokens(x, context)
        n, _, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        tokens = self.block(tokens, ctx)
        out = x + self.proj_out(tokens.transpose(1, 2).reshape(n, -1, h, w))
        if self.pool > 1:
            out = F.interpolate(out, scale_factor=self.pool, mode="bilinear", align_corners=False)
        return out
