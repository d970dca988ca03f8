"""The sampler: from a step's logits to the raw and the processed distributions, and a draw.

Shared by ``token-explorer trace`` and the explorer's sampling. The two distributions are kept apart:

- **raw**: the model's logits divided by the temperature (by 1 when greedy), nothing removed;
- **processed**: what the draw is taken from. The filters run in the order transformers runs its
  logits processors: repetition penalty, no-repeat n-gram ban, the early EOS and whitespace bans,
  then temperature, top-k and top-p. A removed token's logit is ``-inf``.

Greedy (temperature 0) picks the arg-max of the processed logits, taken at temperature 1.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from .sampling_params import SamplingParams

__all__ = ["SamplingParams", "choose", "eos_token_ids", "process", "raw_logits", "whitespace_token_ids"]


def raw_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """(V,) float32 logits scaled by the temperature (1 when greedy)."""
    return logits.float() / (1.0 if params.greedy else params.temperature)


def penalize_repetition(logits: torch.Tensor, seen: Sequence[int], penalty: float) -> torch.Tensor:
    """The standard rule over tokens already present: a positive logit is divided by ``penalty``,
    a negative one multiplied, so a seen token always becomes less likely for ``penalty > 1``."""
    if penalty == 1.0 or not len(seen):
        return logits
    ids = torch.tensor(sorted(set(int(i) for i in seen)), device=logits.device)
    picked = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def banned_ngram_tokens(context: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``context``."""
    if n <= 0 or len(context) < n:
        return set()
    prefix = tuple(context[len(context) - n + 1:]) if n > 1 else ()
    banned = set()
    for start in range(len(context) - n + 1):
        if tuple(context[start : start + n - 1]) == prefix:
            banned.add(int(context[start + n - 1]))
    return banned


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the tokens whose logit is at least the k-th largest (ties at the boundary kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most likely tokens, in order, until their mass reaches ``p`` (the token that crosses
    ``p`` is kept, so at least one token stays)."""
    if p >= 1.0:
        return logits
    order = logits.argsort(descending=True)
    probs = logits[order].softmax(-1)
    before = probs.cumsum(-1) - probs  # mass of the more likely tokens
    drop = order[before >= p]
    return logits.index_fill(0, drop, float("-inf"))


def process(logits: torch.Tensor, context: Sequence[int], step: int, params: SamplingParams,
            eos_ids: Collection[int] = (), whitespace_ids: Collection[int] = ()) -> torch.Tensor:
    """(V,) float32 processed logits of step ``step`` (0-based count of new tokens so far).

    ``context``: every token id so far, prompt included (the repetition penalty and the n-gram ban
    read it). Removed tokens get ``-inf``; never all of them: a ban that would leave nothing is skipped.
    """
    out = penalize_repetition(logits.float(), context, params.repetition_penalty)
    bans: list[Collection[int]] = [banned_ngram_tokens(context, params.no_repeat_ngram_size)]
    if step < max(params.min_new_tokens, params.block_eos_steps):
        bans.append(eos_ids)
    if step < params.block_whitespace_steps:
        bans.append(whitespace_ids)
    for ban in bans:
        if ban:
            ids = torch.tensor(sorted(int(i) for i in ban), device=out.device)
            banned = out.index_fill(0, ids, float("-inf"))
            if bool(torch.isfinite(banned).any()):
                out = banned
    out = raw_logits(out, params)
    out = keep_top_k(out, params.top_k)
    return keep_top_p(out, params.top_p)


def choose(processed: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> int:
    """The next token: the arg-max when greedy, else a draw from softmax(processed)."""
    if params.greedy:
        return int(processed.argmax())
    return int(torch.multinomial(processed.softmax(-1), 1, generator=generator))


def whitespace_token_ids(token_bytes, vocab_size: int) -> set[int]:
    """Ids whose bytes are non-empty and all ASCII whitespace; ``token_bytes(id) -> bytes``."""
    out = set()
    for i in range(vocab_size):
        data = token_bytes(i)
        if data and not data.strip():
            out.add(i)
    return out


def eos_token_ids(model, tokenizer) -> set[int]:
    """Every id the model or its tokenizer declares as end of sequence."""
    out: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            out.add(value)
        elif isinstance(value, (list, tuple)):
            out.update(int(v) for v in value)
    return out
