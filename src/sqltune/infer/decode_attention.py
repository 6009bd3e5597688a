"""Attention for the decoding step on the CPU.

When `generate` decodes, every layer attends one new token per row to the whole KV cache. PyTorch's
CPU flash-attention kernel is built for long queries: for a single query token it spends about
1.4 ms per layer on a batch of 16 rows x 500 cached tokens (SmolLM2-135M, bf16, 2 cores), a third
of the decoding step, for a few MFLOP of work. Two batched matrix products and a float32 softmax do
the same in a quarter of the time. The query heads that share a key/value head are stacked (grouped
query attention), so the cache is read once per key/value head and never repeated.

`use_decode_attention(model)` registers this under `sqltune_decode` (transformers'
`AttentionInterface`): single-token queries take this path, every longer query (the prefill) goes
to transformers' SDPA attention unchanged. Only CPU models that use SDPA are switched.
"""

from __future__ import annotations

import torch

ATTENTION_NAME = "sqltune_decode"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature; query (batch, heads, 1, dim), key/value (batch,
    kv_heads, length, dim), mask broadcastable to (batch, 1, 1, length): True or 0.0 where a
    key may be read. Returns (batch, 1, heads, dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] != 1 or module.training or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim**-0.5
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)  # the heads sharing a kv head
    scores = torch.matmul(grouped, key.transpose(2, 3)).float() * scale  # (batch, kv_heads, group, length)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask[:, :, -1:, : key.shape[2]], float("-inf"))
        else:
            scores = scores + attention_mask[:, :, -1:, : key.shape[2]].float()
    weights = scores.softmax(dim=-1).to(value.dtype)
    # weights @ value computed transposed: the growing cache (`sqltune.infer.prefill`) stores values
    # as (dim, slots) matrices, which BLAS then reads in place
    output = torch.matmul(value.transpose(2, 3), weights.transpose(2, 3)).transpose(2, 3)
    return output.reshape(batch, 1, heads, dim), None


def use_decode_attention(model) -> bool:
    """Switch a CPU model that attends with SDPA to `decode_attention`; whether it was switched."""
    from sqltune.models.attention import switch_cpu_sdpa

    return switch_cpu_sdpa(model, ATTENTION_NAME, decode_attention)
