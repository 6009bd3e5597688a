"""The numbers of PPO (`stage=ppo`): token-level rewards, advantages, and the two clipped losses.

The answers of a rollout are a batch of sequences, and every tensor here is (answers, answer
tokens), laid out by `pack_sequences`: each answer starts at column 0, and `mask` is 1 on its
tokens and 0 on the padding after it. Padding never counts: every mean and every whitening is
taken over the masked positions only (`masked_mean`, `masked_whiten`). Notation: `logp` is a
sampled token's log-probability under the policy being trained, `logp_old` under the policy as
it was when the rollout was sampled, `logp_ref` under the reference model; `V` is the value
head's estimate of the return from a token on.

1. Rewards (`compute_rewards`). An answer is an episode whose actions are its tokens.
   `kl = logp - logp_ref` at a sampled token is a one-sample estimate of the KL divergence from
   the reference (its mean over samples is the KL), and every token is rewarded `-kl_coef * kl`:
   drifting from the reference costs, token by token. The answer's score (the execution reward
   or a reward model's) is added to its last token's reward: the only outside reward arrives
   when the episode ends.
2. Advantages (`gae`): generalised advantage estimation (Schulman et al., 2015). The TD error
   `delta_t = r_t + gamma * V_{t+1} - V_t` says how much better things went at token t than the
   value head expected (V after the last token is 0); the advantage sums these errors backwards,
   `A_t = delta_t + gamma * lam * A_{t+1}`. `lam=1` gives the discounted return minus the value
   (unbiased, noisy), `lam=0` the one-step error (steadier, as biased as the value head). The
   returns `A_t + V_t` are the value head's targets.
3. Policy loss (`policy_loss`): PPO's clipped surrogate objective (Schulman et al., 2017), negated.
   With `ratio = exp(logp - logp_old)`, a token's loss is
   `max(-A * ratio, -A * clip(ratio, 1 - cliprange, 1 + cliprange))`, the worse of the two: an
   update gains nothing by moving a token's probability more than `cliprange` (relative) past
   where it was sampled, yet may still undo a move that made things worse.
4. Value loss (`value_loss`): the squared error of V against the returns, clipped the same way:
   `0.5 * max((V - R)^2, (V_clipped - R)^2)`, where `V_clipped` stays within `cliprange` of the
   rollout's value.

Both losses also report a clip fraction (the share of tokens where the clipped term decided),
and the policy loss the approximate KL `mean(0.5 * (logp - logp_old)^2)`: together they tell how
far an update has moved from the rollout it learns from.

The value head (`ValueHead`) is one linear layer on the policy's last hidden state, starting at
zero. How the stage samples rollouts, wires the scores in and trains on them is
`sqltune.train.ppo`; these functions are checked against numbers worked out by hand in
`tests/train/test_ppo.py`.
"""

from __future__ import annotations

import torch
from torch import nn

# ---- masked means, the rewards, the advantages, the losses ------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of `values` where `mask` is 1 (0 for an empty mask)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """`values` divided by their standard deviation over the masked positions (population variance)
    and centred on 0, or, with `shift_mean=False`, keeping their mean; padding becomes 0."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, kl) per token: `kl = logp - logp_ref`, the sampled estimate of the KL divergence
    from the reference; every token is rewarded `-kl_coef * kl`, and each answer's last token also
    gets the answer's score (`scores`, one per answer)."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation, from the last token backwards:
    `delta_t = r_t + gamma * V_{t+1} - V_t` (V after the answer's last token is 0: the episode ends)
    and `A_t = delta_t + gamma * lam * A_{t+1}`; returns (the value targets) are `A_t + V_t`."""
    rewards = rewards * mask
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, clip fraction, approximate KL): PPO's clipped surrogate objective, negated, averaged
    over the answer tokens. With `ratio = exp(logp - logp_old)` each token's loss is
    `max(-A * ratio, -A * clip(ratio, 1 - cliprange, 1 + cliprange))`; the clip fraction is the share
    of tokens where the clipped term won, the approximate KL `mean(0.5 * (logp - logp_old)^2)`."""
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(0.5 * log_ratio.detach() ** 2, mask)
    return loss, clip_fraction.detach(), approx_kl


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clip fraction): the value head's clipped squared error against the returns,
    `0.5 * max((V - R)^2, (V_clipped - R)^2)` averaged over the answer tokens, where `V_clipped`
    moves at most `cliprange` from the rollout's value; the clip fraction is the share of tokens
    where the clipped error won."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange, cliprange)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    return loss, masked_mean((clipped_error > unclipped_error).float(), mask).detach()


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The log-probability of each token under the logits that predict it (float32)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy of each position's next-token distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


# ---- the layout: prompt and answer as one sequence, answers from the same column ------------------


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of `rows` padded on the left, as generation wants prompts."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def pack_sequences(
    prompts: list[list[int]], completions: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Prompt and answer of each row as one sequence: the prompt left-padded, the answer after it and
    right-padded, so that every answer starts at the same column and the last `answer width`
    columns hold the answers. Positions count the real tokens only, as in generation."""
    input_ids, attention_mask = left_pad(prompts, pad_id)
    width = max(len(c) for c in completions)
    answers = torch.full((len(completions), width), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((len(completions), width), dtype=torch.float32)
    for i, completion in enumerate(completions):
        answers[i, : len(completion)] = torch.tensor(completion, dtype=torch.long)
        completion_mask[i, : len(completion)] = 1.0
    input_ids = torch.cat([input_ids, answers], dim=1)
    attention_mask = torch.cat([attention_mask, completion_mask.long()], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "completion_mask": completion_mask,
    }


# ---- the value head ------------------------------------------------------------------------------------


class ValueHead(nn.Module):
    """The value model: a linear layer from the policy's last hidden state to one number, the
    expected return from that token on. It starts at zero (every value 0)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden).squeeze(-1)
