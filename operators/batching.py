"""Token-budget micro-batching: pure functions, no Ray, no torch.

Rows of a window are sorted by token length and cut into micro-batches whose padded size
(rows x longest row) stays within `max_tokens`, so little compute goes to padding."""
from __future__ import annotations

import numpy as np


def plan_microbatches(lengths: list[int] | np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Index arrays into `lengths`, each a micro-batch with rows * max(length) <= max_tokens
    (a row longer than the budget goes alone). Every index appears exactly once. One numpy
    search per micro-batch, none per row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    ordered = lengths[order]
    batches, start, n = [], 0, len(order)
    while start < n:
        # a batch from `start` holds at most max_tokens // its shortest row rows: look no further
        horizon = min(n, start + max_tokens // max(int(ordered[start]), 1) + 1)
        # padded size of the batch start..end-1 for each end; ascending, as lengths are sorted
        sizes = np.arange(1, horizon - start + 1) * ordered[start:horizon]
        end = start + max(1, int(np.searchsorted(sizes, max_tokens, side="right")))
        batches.append(order[start:end])
        start = end
    return batches


def pad(sequences: list[list[int]], pad_value: int,
        side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Pad ragged id lists on `side` ("right", or "left" for batched generation, so every
    sequence ends at the last column) -> (ids, attention_mask), both (batch, longest) int64."""
    if side not in ("right", "left"):
        raise ValueError(f"padding side must be 'right' or 'left', got {side!r}")
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_value, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for i, seq in enumerate(sequences):
        span = slice(0, len(seq)) if side == "right" else slice(longest - len(seq), longest)
        ids[i, span] = seq
        mask[i, span] = 1
    return ids, mask
