"""Token-budget micro-batching: pure functions, no Ray, no torch.

Rows of a window are sorted by token length and cut into micro-batches whose padded size
(rows x longest row) stays within `max_tokens`, so little compute goes to padding."""
from __future__ import annotations

import numpy as np


def plan_microbatches(lengths: list[int] | np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Index arrays into `lengths`, each a micro-batch with rows * max(length) <= max_tokens
    (a row longer than the budget goes alone). Every index appears exactly once."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        # lengths are ascending within the slice, so its longest row is its last
        if end > start + 1 and (end - start) * lengths[order[end - 1]] > max_tokens:
            batches.append(order[start:end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
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
