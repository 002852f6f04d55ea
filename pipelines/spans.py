"""Extractive question answering: from per-token start/end logits of every window of a row to
ranked answer spans in the context. Pure numpy, no model, no tokenizer.

These reproduce transformers 4.x's question-answering pipeline (`select_starts_ends`,
`decode_spans`, `get_indices` and the merging in `postprocess`), quirks included, because that
pipeline is the reference our answers must equal:
- probabilities are a softmax over the window's tokens, non-context tokens masked out; a span's
  score is p(start) * p(end), and spans longer than `max_answer_len` tokens or ending before
  they start score 0;
- the `top_k` candidates are picked before the context filter, as transformers does, and token
  0 (CLS) always passes that filter (its probability is zeroed first);
- answers with the same text (case-insensitive) across or within windows are merged and their
  scores summed; the first one found keeps its offsets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_WORD = -1   # word id / sequence id of special tokens (None in tokenizers' Encoding)
MASKED_LOGIT = -10000.0


@dataclass
class Window:
    """What decoding needs about one window (question + context slice) of a row."""

    p_mask: np.ndarray        # (tokens,) 1 = cannot be part of an answer (question, specials)
    offsets: np.ndarray       # (tokens, 2) char offsets into the token's own text
    word_ids: np.ndarray      # (tokens,) word index within its sequence, NO_WORD for specials
    sequence_ids: np.ndarray  # (tokens,) 0 / 1 for the first / second text, NO_WORD specials


def decode_spans(start: np.ndarray, end: np.ndarray, top_k: int, max_answer_len: int,
                 allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `top_k` best (start, end) token spans of one window, best first, among spans that
    start and end on an allowed token. start, end: (1, tokens) probabilities; allowed: (1,
    tokens) nonzero where a token may be part of an answer. Candidates are ranked before the
    filter, so fewer than `top_k` may come back. Returns (starts, ends, scores)."""
    # score of each (start, end): (1, tokens, tokens)
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    # zero out end < start and spans longer than max_answer_len
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if top_k == 1:
        best = [np.argmax(scores_flat)]
    elif len(scores_flat) < top_k:
        best = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, top_k)[0:top_k]
        best = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(best, candidates.shape)[1:]
    # transformers tests membership in `allowed.nonzero()` of the 2-D mask, whose row indices
    # (all 0) make token 0 always allowed; kept for identical answers
    allowed_ids = allowed.nonzero()
    keep = np.isin(starts, allowed_ids) & np.isin(ends, allowed_ids)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends]


def select_starts_ends(start: np.ndarray, end: np.ndarray, p_mask: np.ndarray,
                       attention_mask: np.ndarray | None, min_null_score: float = 1000000,
                       top_k: int = 1, handle_impossible_answer: bool = False,
                       max_answer_len: int = 15):
    """Window logits -> its best spans. start, end: (1, tokens) logits; p_mask: (1, tokens), 1
    where a token cannot be in the answer. Returns (starts, ends, scores, min_null_score), the
    last being the lowest p(CLS start) * p(CLS end) seen so far when impossible answers count."""
    allowed = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        allowed = allowed & attention_mask
    masked = allowed == 0.0
    start = np.where(masked, MASKED_LOGIT, start)
    end = np.where(masked, MASKED_LOGIT, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # CLS is never a span start or end
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, allowed)
    return starts, ends, scores, min_null_score


def word_char_span(window: Window, word: int, sequence: int) -> tuple[int, int] | None:
    """(first char, end char) of `word` of `sequence` within the window, as tokenizers'
    `Encoding.word_to_chars` gives it (only the word's tokens inside this window count)."""
    in_sequence = np.nonzero(window.sequence_ids == sequence)[0]
    if len(in_sequence) == 0:  # tokenizers searches the whole window then
        in_sequence = np.arange(len(window.word_ids))
    first = last = None
    for i in in_sequence:
        w = window.word_ids[i]
        if w != NO_WORD and w > word:  # word ids ascend: nothing further can match
            break
        if w == word:
            first = i if first is None else first
            last = i
    if first is None:
        return None
    return int(window.offsets[first][0]), int(window.offsets[last][1])


def char_span(window: Window, s: int, e: int, sequence: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens s..e; widened to whole words when `align_to_words` (falling back
    to token offsets where a token has no word, e.g. CLS), as transformers' `get_indices`."""
    if align_to_words:
        start_word, end_word = int(window.word_ids[s]), int(window.word_ids[e])
        first = None if start_word == NO_WORD else word_char_span(window, start_word, sequence)
        last = None if end_word == NO_WORD else word_char_span(window, end_word, sequence)
        if first is not None and last is not None:
            return first[0], last[1]
    return int(window.offsets[s][0]), int(window.offsets[e][1])


def best_answers(context: str, windows: list[Window], start_logits: list[np.ndarray],
                 end_logits: list[np.ndarray], *, context_sequence: int, top_k: int,
                 max_answer_len: int, handle_impossible_answer: bool,
                 align_to_words: bool) -> list[dict]:
    """All windows of one row -> up to `top_k` answers {answer, score, start, end}, best first.
    start_logits[i], end_logits[i]: (tokens,) logits of window i."""
    pre_top_k = top_k * 2 + 10 if align_to_words else top_k  # word alignment merges some
    min_null_score = 1000000.0
    answers: list[dict] = []
    by_text: dict[str, dict] = {}
    for window, start, end in zip(windows, start_logits, end_logits):
        starts, ends, scores, min_null_score = select_starts_ends(
            np.asarray(start, dtype=np.float32)[None], np.asarray(end, dtype=np.float32)[None],
            window.p_mask[None].astype(np.int64), np.ones((1, len(start)), dtype=np.int64),
            min_null_score, pre_top_k, handle_impossible_answer, max_answer_len)
        for s, e, score in zip(starts, ends, scores):
            first, last = char_span(window, int(s), int(e), context_sequence, align_to_words)
            text = context[first:last]
            same = by_text.get(text.lower())
            if same is not None:
                same["score"] += score.item()
            else:
                answer = {"answer": text, "score": score.item(), "start": first, "end": last}
                answers.append(answer)
                by_text[text.lower()] = answer
    if handle_impossible_answer:
        answers.append({"answer": "", "score": min_null_score, "start": 0, "end": 0})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
