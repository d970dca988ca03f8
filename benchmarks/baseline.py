"""What every benchmark here measures against: a bare KV-cached decode step of the bundled model.

``bare_model`` is a plain transformers model with SDPA and no hooks; ``decode_ms`` times one
single-token forward over a DynamicCache holding the prompt (cropped back after each step).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from token_explorer.model.loading import bundled_gguf, convert_gguf

TEXT = (
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Reasoning: Natalia sold 48/2 = 24 clips in May. "
    "Natalia sold 48+24 = 72 clips altogether in April and May. Answer: 72. "
)


def bare_model(device: str = "cpu") -> torch.nn.Module:
    """The bundled model as plain transformers loads it: SDPA attention, no hooks."""
    folder = convert_gguf(bundled_gguf())
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").to(device).eval()


def prompt_ids(tokenize: Callable[[str], list[int]], n: int, extra: int = 1) -> list[int]:
    """``n`` prompt tokens of a GSM8K-like text, then ``extra`` more to append."""
    ids: list[int] = []
    while len(ids) < n + extra:
        ids += tokenize(TEXT)
    return ids[: n + extra]


def _crop_last(cache: DynamicCache, length: int) -> None:
    """Drop the decoded token again (transformers 5 takes a negative count, 4 the new length)."""
    import transformers

    cache.crop(-1 if int(transformers.__version__.split(".")[0]) >= 5 else length)


def decode_step(bare: torch.nn.Module, prompt: list[int], token: int) -> Callable[[], float]:
    """A function that times (ms) one single-token forward of ``token`` over a KV cache of
    ``prompt``, cropped back after each; for benchmarks that interleave decode steps with what
    they measure, so that both see the same load."""
    device = next(bare.parameters()).device
    cache = DynamicCache(config=bare.config)
    step = torch.tensor([[token]], device=device)
    with torch.no_grad():
        bare(torch.tensor([prompt], device=device), past_key_values=cache, use_cache=True)

    def one() -> float:
        with torch.no_grad():
            start = time.perf_counter()
            bare(step, past_key_values=cache, use_cache=True)
            ms = (time.perf_counter() - start) * 1000
        _crop_last(cache, len(prompt))
        return ms

    one()  # warm-up
    return one


def decode_ms(bare: torch.nn.Module, prompt: list[int], token: int, reps: int) -> float:
    """Median ms of one single-token forward of ``token`` over a KV cache of ``prompt``."""
    device = next(bare.parameters()).device
    cache = DynamicCache(config=bare.config)
    step = torch.tensor([[token]], device=device)
    times = []
    with torch.no_grad():
        bare(torch.tensor([prompt], device=device), past_key_values=cache, use_cache=True)
        for _ in range(reps + 1):
            start = time.perf_counter()
            bare(step, past_key_values=cache, use_cache=True)
            times.append((time.perf_counter() - start) * 1000)
            _crop_last(cache, len(prompt))
    return statistics.median(times[1:])  # the first one warms up


def timed(fn) -> float:
    """ms of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def median_ms(fn, reps: int) -> float:
    """Median ms of ``reps`` calls of ``fn``."""
    return statistics.median(timed(fn) for _ in range(reps))
