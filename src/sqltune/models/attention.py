"""sqltune's attention functions as transformers knows them (`AttentionInterface`).

S2-Attn (`sqltune.train.methods.shift_attn`), the decoding-step attention
(`sqltune.infer.decode_attention`) and grouped-query attention for training
(`sqltune.models.lean`) are registered under names of their own, with SDPA's mask.
"""

from __future__ import annotations


def register(name: str, function) -> None:
    """Make attention `function` known to transformers as `name`, with SDPA's mask; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, sdpa_mask)


def switch_cpu_sdpa(model, name: str, function) -> bool:
    """Switch a CPU model (or a peft model around one) that attends with SDPA to `function`,
    registered as `name`; whether it was switched."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if (
        getattr(config, "_attn_implementation", None) != "sdpa"
        or next(base.parameters()).device.type != "cpu"
    ):
        return False
    register(name, function)
    try:
        base.set_attn_implementation(name)
    except (ValueError, NotImplementedError):  # a model class that accepts no custom attention
        return False
    return True
