"""Training methods beyond the fine-tuning types, each switched on by keys of `sqltune train`.

- `optimizers`: GaLore, APOLLO and BAdam (full-parameter training with less optimizer memory) and
  NEFTune (noisy embeddings).
- `expand`: LLaMA Pro block expansion (`sqltune expand`, `use_llama_pro`).
- `shift_attn`: LongLoRA's shifted sparse attention (`shift_attn`).
- `mod`: Mixture-of-Depths (`mixture_of_depths`).
"""
