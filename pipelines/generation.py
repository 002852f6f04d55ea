"""Shared pieces of batched generation: batch-invariant sampling, a repetition penalty that
ignores left padding, stop strings. No task registers here.

Sampling (Gumbel-max): for logits z, argmax(z + g) with g_i ~ Gumbel(0, 1) i.i.d. is an exact
sample from softmax(z). `GumbelSampler` adds noise drawn from a generator seeded by (seed, row
key, step) to the already warped scores, so `generate` can run greedy (`do_sample=False`) and a
row's sample depends only on the seed, the row's id and its own logits: never on which rows
share its batch or which actor runs it.

The objects here are plain callables with transformers' `LogitsProcessor` / `StoppingCriteria`
call signatures (`(input_ids, scores)`), so importing this module loads neither torch nor
transformers.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Sequence

import numpy as np


def row_seed(seed: int, row_key: str, step: int) -> int:
    """A 63-bit seed that depends only on (seed, row key, step), stable across processes and
    platforms (Python's `hash` is salted per process, so it is not used)."""
    digest = hashlib.blake2b(f"{seed}\x00{row_key}\x00{step}".encode("utf-8"),
                             digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] & (2**63 - 1)


def gumbel_noise(seed: int, size: int):
    """(size,) float32 torch tensor of Gumbel(0, 1) noise from a generator seeded with `seed`."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    uniform = torch.rand(size, generator=generator, dtype=torch.float64)
    # rand is in [0, 1): keep it away from 0 so neither log is infinite
    uniform = uniform.clamp_(min=torch.finfo(torch.float64).tiny)
    return (-torch.log(-torch.log(uniform))).to(torch.float32)


class GumbelSampler:
    """Last logits processor when sampling: scores + Gumbel noise per row, so greedy decoding
    of the result draws a sample from softmax(scores). Row r of the batch (beams are refused
    with sampling) uses the noise of (seed, row_keys[r], step), step = tokens generated so far."""

    def __init__(self, seed: int, row_keys: Sequence[str], prompt_length: int):
        self.seed = seed
        self.row_keys = list(row_keys)
        self.prompt_length = prompt_length  # padded prompt length: input_ids grow from here

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.prompt_length
        noise = torch.stack([gumbel_noise(row_seed(self.seed, key, step), scores.shape[1])
                             for key in self.row_keys])  # (batch, vocab)
        return scores.float() + noise.to(scores.device)


class PaddingAwareRepetitionPenalty:
    """transformers' repetition penalty (CTRL: logit / p if positive, * p if negative, for every
    token already in the sequence), computed over each row's own tokens only. transformers'
    processor also penalises the left padding's pad token, so a row's output would depend on
    how much padding its batch gave it."""

    def __init__(self, penalty: float, pad_lengths: Sequence[int], num_beams: int = 1):
        self.penalty = penalty
        self.pad_lengths = [int(n) for n in pad_lengths for _ in range(num_beams)]

    def __call__(self, input_ids, scores):
        import torch

        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        pads = torch.tensor(self.pad_lengths, device=input_ids.device)[:, None]  # (batch, 1)
        first_real = input_ids.gather(1, pads)  # each row's first own token, (batch, 1)
        # padding positions repeat a token the row has anyway: penalising it twice is a no-op
        ids = torch.where(positions[None, :] < pads, first_real, input_ids)
        score = scores.gather(1, ids)
        score = torch.where(score < 0, score * self.penalty, score / self.penalty)
        return scores.scatter(1, ids, score)


class StopOnStrings:
    """Stopping criterion: a row is done once its generated text contains a stop string.
    Records, per row, how many tokens it had generated when that happened (`stopped_at`), so
    the pad tokens generate appends afterwards can be told from real ones."""

    def __init__(self, stops: Sequence[str], tokenizer, prompt_length: int, batch: int):
        self.stops = list(stops)
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stopped_at: list[int | None] = [None] * batch

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        step = input_ids.shape[1] - self.prompt_length
        done = []
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            if self.stopped_at[row] is None and contains_stop(
                    self.tokenizer.decode(ids, skip_special_tokens=True), self.stops):
                self.stopped_at[row] = step
            done.append(self.stopped_at[row] is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def contains_stop(text: str, stops: Sequence[str]) -> bool:
    return any(stop in text for stop in stops)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for stop in stops:
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def generated_lengths(new_tokens: np.ndarray, eos_ids: Sequence[int],
                      stopped_at: Sequence[int | None] | None = None) -> np.ndarray:
    """(batch,) number of real tokens in each row of `new_tokens` (batch, steps), the tokens
    `generate` appended to a batch: up to and including the first end-of-sequence token, or up
    to the step where a stop string ended the row; what follows is padding."""
    batch, steps = new_tokens.shape
    lengths = np.full(batch, steps, dtype=np.int64)
    if len(eos_ids):
        is_eos = np.isin(new_tokens, np.asarray(list(eos_ids)))
        has_eos = is_eos.any(axis=1)
        lengths[has_eos] = is_eos.argmax(axis=1)[has_eos] + 1
    if stopped_at is not None:
        for row, step in enumerate(stopped_at):
            if step is not None:
                lengths[row] = min(lengths[row], step)
    return lengths


def pad_ragged(rows: Sequence[Sequence[int]], width: int, fill: int = -1) -> np.ndarray:
    """(len(rows), width) int64 array, each row left-aligned, `fill` after its end."""
    out = np.full((len(rows), width), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out
