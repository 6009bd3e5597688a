"""`SftTrainer`: transformers' Trainer with a memory-lean loss and LoRA+ parameter groups.

A causal LM normally computes logits for every position: batch x length x vocabulary floats
(8 x 512 x 49,152 x 4 bytes = 800 MB for SmolLM2, plus as much again for their gradient, plus the
softmax). Only the response positions carry loss, typically a tenth of the tokens of a Text-to-SQL
prompt. So the model is run with `logits_to_keep=1` (the head computes one position), and the head
is applied here to the final hidden states at the response positions only, in chunks of
`loss_chunk_size` positions whose logits are recomputed in the backward pass
(`torch.utils.checkpoint`), so at most one chunk of logits is ever alive. The model is still
called through its (possibly DDP- or DeepSpeed-wrapped) forward, so multi-process training works
unchanged. No library offers this for any causal LM, hence our own ~30 lines.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer
from transformers.integrations import is_deepspeed_zero3_enabled

from sqltune.args import FinetuningArguments
from sqltune.models.encoding import IGNORE_INDEX


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def response_loss_sum(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: torch.nn.Module,
    chunk_size: int,
    recompute: bool = True,
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the positions whose (shifted) label is not ignored,
    and how many there are. `hidden`: (batch, length, dim) final hidden states. With `recompute`
    each chunk's logits are recomputed in the backward pass instead of kept; ZeRO-3 turns it off,
    because its partitioned head weight is gathered for the forward call only."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    states = hidden[:, :-1][keep]
    targets = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_size):
        part = slice(start, start + chunk_size)
        if recompute and torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, head, states[part], targets[part], use_reentrant=False)
        else:
            total = total + _chunk_loss(head, states[part], targets[part])
    if targets.numel() == 0:  # keep the graph connected so every process runs the same backward
        total = total + hidden.sum() * 0.0
    return total, int(targets.numel())


def final_hidden_states(model, unwrapped, inputs: dict) -> tuple[Any, torch.Tensor]:
    """`model`'s outputs on `inputs` (logits of the last position only) and the final hidden states
    (after the last norm): the output of the decoder (`get_decoder()`) where the model has one, so
    that the outputs of the other layers are not all kept until the loss is computed (batch 8 x 512
    on SmolLM2: 31 x 4.5 MB); else the last of every layer's hidden states."""
    get_decoder = getattr(unwrapped, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    if isinstance(decoder, torch.nn.Module):
        captured: list[torch.Tensor] = []
        handle = decoder.register_forward_hook(lambda module, args, output: captured.append(output[0]))
        try:
            outputs = model(**inputs, logits_to_keep=1, use_cache=False)
        finally:
            handle.remove()
        if captured and isinstance(captured[-1], torch.Tensor):
            return outputs, captured[-1]
    outputs = model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    return outputs, outputs.hidden_states[-1]


class SftTrainer(Trainer):
    """Trainer for supervised fine-tuning; counts the non-padding tokens it trains on."""

    loss_is_scaled_for_ga = True  # compute_loss divides by the tokens of the whole accumulated batch

    def __init__(self, *args, finetuning_args: FinetuningArguments, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.finetuning_args = finetuning_args
        self.model_accepts_loss_kwargs = True  # makes the Trainer count num_items_in_batch for us
        self._loss_shifts_labels = True
        self.train_tokens = 0  # non-padding tokens trained on by this process in this run

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        if model.training:
            mask = inputs.get("attention_mask")
            self.train_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        unwrapped = self.accelerator.unwrap_model(model)
        outputs, hidden = final_hidden_states(model, unwrapped, inputs)
        head = unwrapped.get_output_embeddings()
        with self.accelerator.autocast():  # the model's forward ran under it; the head runs here
            total, count = response_loss_sum(
                hidden,
                labels,
                head,
                self.finetuning_args.loss_chunk_size,
                recompute=not is_deepspeed_zero3_enabled(),
            )
        if num_items_in_batch is None:
            loss = total / max(count, 1)
        else:
            loss = total / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        outputs.hidden_states = None
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        """LoRA+ (`loraplus_lr_ratio`): peft's optimizer with a larger learning rate for B matrices."""
        ratio = self.finetuning_args.loraplus_lr_ratio
        if ratio is None or self.optimizer is not None:
            return super().create_optimizer(model)
        from peft.optimizers import create_loraplus_optimizer

        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
        kwargs.pop("lr", None)
        self.optimizer = create_loraplus_optimizer(
            self.model,
            optimizer_cls,
            lr=self.args.learning_rate,
            loraplus_lr_ratio=ratio,
            loraplus_weight_decay=self.args.weight_decay,
            **kwargs,
        )
        return self.optimizer
