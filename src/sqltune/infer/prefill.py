"""Prompt prefill for the HF engine: shared prefixes computed once, per group of questions.

A batch of prompts sorted token by token holds runs of questions about the same database: each run
begins with the same instruction and schema and differs only in its question. `prefix_runs` splits
a batch into such runs, choosing the split that computes the fewest tokens (a run's prefix once,
then every row's own tokens, padded to the run's longest). `prefill` computes each run's prefix
once (its KV cache repeated for the run's rows), then the rows' own tokens, and lays the rows side
by side in one KV cache holding every prompt but its last token:

    row of run A:  [pad][pad ...][prefix A][pad][own tokens]   + last token (given to `generate`)
    row of run B:  [pad][prefix B        ][pad][own tokens  ]  + last token

The attention mask hides the padding and transformers derives every position from the mask, so
each row reads exactly as its prompt alone. A batch that straddles two databases then costs two
schema prefixes instead of a full prompt per row.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

RUN_OVERHEAD = 32  # a run's extra forward calls, counted in tokens of prefill work
GROWTH = 128  # cache slots a growing layer adds at a time


@dataclass(frozen=True)
class Run:
    """Rows `start` to `end` (exclusive) of a sorted batch, sharing their first `shared` tokens."""

    start: int
    end: int
    shared: int


def _run_cost(lengths: Sequence[int], start: int, end: int, shared: int) -> int:
    """Prefill work of a run: the prefix once, then each row's own tokens (all but the last, which
    `generate` computes) padded to the run's longest."""
    tail = max(lengths[r] - 1 - shared for r in range(start, end))
    return shared + (end - start) * tail + RUN_OVERHEAD


def prefix_runs(rows: Sequence[list[int]], min_shared: int = 32) -> list[Run]:
    """Split `rows` (sorted token by token) into consecutive runs, minimising the prefill work.

    A run's prefix is what all of its rows share, leaving each row its last token; prefixes shorter
    than `min_shared` are not worth a separate forward call and count as none."""
    count = len(rows)
    lengths = [len(r) for r in rows]
    neighbours = [len(os.path.commonprefix([rows[i], rows[i + 1]])) for i in range(count - 1)]
    best: list[tuple[int, list[Run]]] = [(0, [])]
    for end in range(1, count + 1):
        options = []
        shared = lengths[end - 1] - 1
        for start in range(end - 1, -1, -1):
            if start < end - 1:
                shared = min(shared, neighbours[start], lengths[start] - 1)
            run_shared = shared if shared >= min_shared else 0
            cost, runs = best[start]
            options.append(
                (cost + _run_cost(lengths, start, end, run_shared), [*runs, Run(start, end, run_shared)])
            )
        best.append(min(options, key=lambda option: option[0]))
    return best[count][1]


@functools.cache
def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """transformers' growing cache layer without a copy per step.

        `DynamicLayer` concatenates every new token onto the whole cache, copying all of it at every
        decoding step. This layer keeps a zeroed buffer with room to spare and writes new tokens into
        it, `GROWTH` slots more at a time, as transformers' static cache does. Attention reads the
        whole buffer: the causal mask hides the slots not yet written (`get_mask_sizes` reports the
        buffer's length), so no step copies the cache. The buffer is stored as (batch, heads, dim,
        slots), so that keys and values reach attention as plain batches of contiguous matrices.
        Whatever replaces the tensors (beam search reordering rows, repeating them) is taken over
        into a new buffer before the next step.
        """

        filled = 0

        def allocate(self, rows: int, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
            """New zeroed buffers of `rows` rows and `room` slots, heads and dtype as `keys`/`values`."""
            self.buffer = tuple(t.new_zeros((rows, t.shape[1], t.shape[-1], room)) for t in (keys, values))
            self.keys, self.values = (b.transpose(2, 3) for b in self.buffer)

        def adopt(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
            """Copy the first `filled` slots of `keys`/`values` into new buffers of `room` slots."""
            self.allocate(keys.shape[0], keys, values, room)
            self.buffer[0][..., : self.filled] = keys[:, :, : self.filled].transpose(2, 3)
            self.buffer[1][..., : self.filled] = values[:, :, : self.filled].transpose(2, 3)

        def place(self, rows: slice, keys: torch.Tensor, values: torch.Tensor) -> None:
            """Write `keys`/`values` of some rows so that they end at the last written slot."""
            start = self.filled - keys.shape[2]
            self.buffer[0][rows, :, :, start : self.filled] = keys.transpose(2, 3)
            self.buffer[1][rows, :, :, start : self.filled] = values.transpose(2, 3)

        def holds_buffer(self) -> bool:
            """Whether `keys` is still a view of this layer's buffer (beam search replaces it)."""
            buffer = getattr(self, "buffer", None)
            return (
                buffer is not None
                and self.keys.data_ptr() == buffer[0].data_ptr()
                and self.keys.shape == buffer[0].transpose(2, 3).shape
            )

        def reserve(self, slots: int) -> None:
            """Make room for `slots` filled slots (and take over replaced tensors)."""
            if not self.holds_buffer():
                self.adopt(self.keys, self.values, max(slots, self.keys.shape[-2]) + GROWTH)
            elif slots > self.buffer[0].shape[-1]:
                self.adopt(self.keys, self.values, slots + GROWTH)

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            self.reserve(self.filled + query_length)
            return self.keys.shape[-2], 0

        def get_seq_length(self) -> int:
            return self.filled

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.filled + key_states.shape[-2]
            self.reserve(end)
            self.buffer[0][..., self.filled : end] = key_states.transpose(2, 3)
            self.buffer[1][..., self.filled : end] = value_states.transpose(2, 3)
            self.filled = end
            return self.keys, self.values

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0:
                self.filled = max(0, self.filled + tokens_to_remove)

    return GrowingLayer


def growing_layer(rows: int, slots: int, keys: torch.Tensor, values: torch.Tensor):
    """A KV cache layer of `rows` rows whose first `slots` slots count as written (zeros until
    `place` fills them), with heads and dtype as `keys`/`values`; it grows in place."""
    layer = _growing_layer_class()()
    layer.lazy_initialization(keys, values)
    layer.allocate(rows, keys, values, slots + GROWTH)
    layer.filled = slots
    return layer


@dataclass
class Prefilled:
    """What `generate` continues from: the KV cache of every prompt but its last token, and the
    token ids and attention mask laid out over the cache plus that last token."""

    cache: object | None
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def _forward(model, input_ids, attention_mask, cache):
    """One forward pass over `input_ids` after `cache`, positions read off the attention mask."""
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return output.cache


def _plain_layers(cache) -> bool:
    """Whether every layer of `cache` is a plain growing key/value layer (not a sliding window, a
    state-space or a quantised layer), so rows can be laid side by side."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


def prefill(model, rows: Sequence[list[int]], pad_id: int, copies: int = 1) -> Prefilled | None:
    """The batch's KV cache (module docstring), each row repeated `copies` times (the beams or
    samples `generate` makes of a prompt); None when the model's cache cannot be laid out so."""
    device = model.device
    runs = prefix_runs(rows)
    blocks = []  # per run: (keys and values per layer, token layout, mask)
    container = None
    with torch.inference_mode():
        for run in runs:
            members = rows[run.start : run.end]
            tail = max(len(r) - 1 - run.shared for r in members)
            width = run.shared + tail
            ids = torch.full((len(members), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, prompt in enumerate(members):
                own = prompt[run.shared : -1]
                ids[row, : run.shared] = torch.tensor(prompt[: run.shared], dtype=torch.long)
                mask[row, : run.shared] = 1
                if own:
                    ids[row, width - len(own) :] = torch.tensor(own, dtype=torch.long)
                    mask[row, width - len(own) :] = 1
            ids, mask = ids.to(device), mask.to(device)
            cache = None
            if run.shared:
                cache = _forward(model, ids[:1, : run.shared], mask[:1, : run.shared], None)
                cache.batch_repeat_interleave(len(members))
            if tail:
                cache = _forward(model, ids[:, run.shared :], mask, cache)
            if cache is not None and not _plain_layers(cache):
                return None
            container = cache if cache is not None else container
            layers = [(layer.keys, layer.values) for layer in cache.layers] if cache is not None else None
            blocks.append((layers, ids, mask))
    # One slot more than the longest run, masked in every row: transformers leaves out the attention
    # mask of a decoding step when nothing is padded, and the growing cache needs it to hide the
    # slots it has not written yet.
    width = 1 + max(ids.shape[1] for _, ids, _ in blocks)
    total = len(rows)
    input_ids = torch.full((total, width + 1), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros_like(input_ids)
    for run, (_, ids, mask) in zip(runs, blocks):
        input_ids[run.start : run.end, width - ids.shape[1] : width] = ids
        attention_mask[run.start : run.end, width - ids.shape[1] : width] = mask
    input_ids[:, width] = torch.tensor([r[-1] for r in rows], dtype=torch.long, device=device)
    attention_mask[:, width] = 1
    if container is not None:  # every run's keys and values, side by side in one cache
        for index in range(len(container.layers)):
            placed = [(run, layers[index]) for run, (layers, _, _) in zip(runs, blocks) if layers is not None]
            layer = growing_layer(total, width, *placed[0][1])
            for run, (keys, values) in placed:
                layer.place(slice(run.start, run.end), keys, values)
            container.layers[index] = layer
        if copies > 1:
            container.batch_repeat_interleave(copies)
    return Prefilled(container, input_ids, attention_mask)


def left_padded(rows: Sequence[list[int]], pad_id: int, device) -> Prefilled:
    """The prompts left-padded to the longest, nothing computed yet."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, prompt in enumerate(rows):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    return Prefilled(None, input_ids.to(device), attention_mask.to(device))
