"""Span decoding of extractive question answering (pipelines/spans.py) and the question-answering
task's options and pure helpers, without a model: spans checked against a brute-force search
over every (start, end) pair, word alignment on hand-built windows, merging across windows."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from corpusmill.pipelines.base import ModelMismatch, softmax
from corpusmill.pipelines.question_answering import (
    QuestionAnswering, QuestionAnsweringOptions, question_global_attention, window_limits,
)
from corpusmill.pipelines.spans import (
    NO_WORD, Window, best_answers, char_span, decode_spans, select_starts_ends, word_char_span,
)


def brute_force_spans(start_p, end_p, allowed, max_answer_len):
    """Every allowed span with its score p(start) * p(end), best first."""
    spans = [(start_p[s] * end_p[e], s, e)
             for s, e in itertools.product(range(len(start_p)), repeat=2)
             if allowed[s] and allowed[e] and 0 <= e - s < max_answer_len]
    return sorted(spans, key=lambda t: -t[0])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top_k", [1, 3, 7])
def test_decode_spans_equals_brute_force(seed, top_k):
    rng = np.random.default_rng(seed)
    n = 30
    start_p = softmax(rng.normal(size=n) * 3).astype(np.float32)
    end_p = softmax(rng.normal(size=n) * 3).astype(np.float32)
    allowed = np.ones(n, dtype=np.int64)
    starts, ends, scores = decode_spans(start_p[None], end_p[None], top_k, 4, allowed[None])
    expected = brute_force_spans(start_p, end_p, allowed, 4)[:top_k]
    assert list(zip(starts.tolist(), ends.tolist())) == [(s, e) for _, s, e in expected]
    np.testing.assert_allclose(scores, [score for score, _, _ in expected], rtol=1e-6)


def test_select_masks_question_tokens_and_long_spans():
    rng = np.random.default_rng(0)
    n, max_answer_len = 40, 3
    p_mask = np.zeros(n, dtype=np.int64)
    p_mask[:12] = 1  # CLS at 0 is made answerable below, question 1..10, separator 11
    p_mask[0] = 0
    p_mask[-1] = 1
    start, end = rng.normal(size=(1, n)) * 4, rng.normal(size=(1, n)) * 4
    starts, ends, scores, _ = select_starts_ends(start.astype(np.float32), end.astype(np.float32),
                                                 p_mask[None], np.ones((1, n), dtype=np.int64),
                                                 top_k=10, max_answer_len=max_answer_len)
    assert len(starts) == 10
    assert all(12 <= s <= e <= n - 2 and e - s < max_answer_len for s, e in zip(starts, ends))
    assert list(scores) == sorted(scores, reverse=True)
    # the scores are products of probabilities normalised over CLS and the context only
    answerable = np.r_[0, np.arange(12, n - 1)]
    p_start = softmax(start[0, answerable].astype(np.float32))
    p_end = softmax(end[0, answerable].astype(np.float32))
    np.testing.assert_allclose(scores[0], p_start[starts[0] - 11] * p_end[ends[0] - 11], rtol=1e-5)


def test_padding_tokens_are_never_answers():
    n = 10
    start = np.zeros((1, n), dtype=np.float32)
    start[0, 8:] = 50  # huge logits on padding
    end = start.copy()
    attention = np.ones((1, n), dtype=np.int64)
    attention[0, 8:] = 0
    starts, ends, _, _ = select_starts_ends(start, end, np.zeros((1, n), dtype=np.int64),
                                            attention, top_k=5)
    assert not set(starts.tolist()) & {8, 9} and not set(ends.tolist()) & {8, 9}


def test_token_zero_passes_the_filter_with_zero_score_as_in_transformers():
    # one context token: fewer positive spans than asked for, so zero-score spans are picked
    # too; of those only spans on token 0 (CLS) or the context token survive the filter
    p_mask = np.array([[0, 1, 1, 0, 1]])
    start = np.array([[5.0, 1.0, 2.0, 0.5, 3.0]], dtype=np.float32)
    starts, ends, scores, _ = select_starts_ends(start, start.copy(), p_mask,
                                                 np.ones_like(p_mask), top_k=12)
    spans = set(zip(starts.tolist(), ends.tolist()))
    assert (3, 3) in spans and spans <= {(0, 0), (0, 3), (3, 3)}
    p_context = softmax(np.array([5.0, 0.5]))[1]  # normalised with CLS, then CLS is zeroed
    assert scores[0] == pytest.approx(p_context ** 2)
    assert all(score == 0 for (s, e), score in zip(zip(starts, ends), scores) if (s, e) != (3, 3))


def test_null_score_is_the_lowest_cls_score_over_windows():
    p_mask = np.array([[0, 1, 0, 0]])
    ones = np.ones_like(p_mask)
    first = np.array([[2.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    second = np.array([[0.0, 0.0, 3.0, 3.0]], dtype=np.float32)
    _, _, _, null = select_starts_ends(first, first, p_mask, ones, handle_impossible_answer=True)
    _, _, _, null2 = select_starts_ends(second, second, p_mask, ones, null,
                                        handle_impossible_answer=True)
    p_first = softmax(first[0, [0, 2, 3]])[0] ** 2
    p_second = softmax(second[0, [0, 2, 3]])[0] ** 2
    assert null == pytest.approx(p_first) and null2 == pytest.approx(min(p_first, p_second))


def window(tokens, sequence_ids, word_ids, question_tokens=0):
    """A Window from (start, end) character offsets; p_mask as transformers sets it (only the
    context and CLS, token 0, may be answers)."""
    sequence = np.array(sequence_ids, dtype=np.int8)
    p_mask = (sequence != 1).astype(np.uint8)
    p_mask[0] = 0
    return Window(p_mask=p_mask,
                  offsets=np.array(tokens, dtype=np.int32).reshape(-1, 2),
                  word_ids=np.array(word_ids, dtype=np.int32), sequence_ids=sequence)


# "un believ able tele scopes" -> [CLS] q [SEP] un ##believ ##able tele ##scopes [SEP]
CONTEXT = "unbelievable telescopes"
WIN = window([(0, 0), (0, 3), (0, 0), (0, 2), (2, 8), (8, 12), (13, 17), (17, 23), (0, 0)],
             [NO_WORD, 0, NO_WORD, 1, 1, 1, 1, 1, NO_WORD],
             [NO_WORD, 0, NO_WORD, 0, 0, 0, 1, 1, NO_WORD])


def test_word_alignment_widens_to_whole_words():
    assert word_char_span(WIN, 0, 1) == (0, 12)
    assert word_char_span(WIN, 1, 1) == (13, 23)
    assert word_char_span(WIN, 0, 0) == (0, 3)   # the question's word 0
    assert word_char_span(WIN, 5, 1) is None
    assert char_span(WIN, 4, 4, 1, align_to_words=True) == (0, 12)
    assert char_span(WIN, 4, 6, 1, align_to_words=True) == (0, 23)
    assert char_span(WIN, 4, 6, 1, align_to_words=False) == (2, 17)
    # CLS has no word: token offsets instead, for both ends
    assert char_span(WIN, 0, 4, 1, align_to_words=True) == (0, 8)


def test_word_cut_by_a_window_edge_spans_only_its_tokens_inside():
    # a later window that starts inside "unbelievable": only ##able of it is here
    later = window([(0, 0), (0, 3), (0, 0), (8, 12), (13, 17), (17, 23), (0, 0)],
                   [NO_WORD, 0, NO_WORD, 1, 1, 1, NO_WORD], [NO_WORD, 0, NO_WORD, 0, 1, 1, NO_WORD])
    assert char_span(later, 3, 3, 1, align_to_words=True) == (8, 12)


def logits_for(window_, best_start, best_end, strength=8.0):
    start = np.zeros(len(window_.p_mask), dtype=np.float32)
    end = np.zeros(len(window_.p_mask), dtype=np.float32)
    start[best_start] = end[best_end] = strength
    return start, end


def test_same_answer_in_two_windows_merges_case_insensitively():
    text = "Fox jumps. the fox"
    first = window([(0, 0), (0, 1), (0, 0), (0, 3), (4, 9), (9, 10), (0, 0)],
                   [NO_WORD, 0, NO_WORD, 1, 1, 1, NO_WORD], [NO_WORD, 0, NO_WORD, 0, 1, 2, NO_WORD])
    second = window([(0, 0), (0, 1), (0, 0), (11, 14), (15, 18), (0, 0)],
                    [NO_WORD, 0, NO_WORD, 1, 1, NO_WORD], [NO_WORD, 0, NO_WORD, 3, 4, NO_WORD])
    (s1, e1), (s2, e2) = logits_for(first, 3, 3), logits_for(second, 4, 4)
    answers = best_answers(text, [first, second], [s1, s2], [e1, e2], context_sequence=1,
                           top_k=3, max_answer_len=15, handle_impossible_answer=False,
                           align_to_words=True)
    assert answers[0]["answer"] == "Fox" and (answers[0]["start"], answers[0]["end"]) == (0, 3)
    merged = [a for a in answers if a["answer"].lower() == "fox"]
    assert len(merged) == 1  # "fox" of the second window added its score to "Fox"
    alone = best_answers(text, [first], [s1], [e1], context_sequence=1, top_k=1,
                         max_answer_len=15, handle_impossible_answer=False, align_to_words=True)
    assert answers[0]["score"] > alone[0]["score"]
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert all(text[a["start"]:a["end"]] == a["answer"] for a in answers)


def test_impossible_answer_competes_when_asked():
    w = WIN
    start, end = logits_for(w, 0, 0, strength=20.0)  # the model bets on CLS: "no answer"
    kwargs = dict(context_sequence=1, top_k=2, max_answer_len=15, align_to_words=True)
    with_null = best_answers(CONTEXT, [w], [start], [end], handle_impossible_answer=True, **kwargs)
    assert with_null[0] == {"answer": "", "score": pytest.approx(with_null[0]["score"]),
                            "start": 0, "end": 0}
    assert with_null[0]["score"] > 0.9
    without = best_answers(CONTEXT, [w], [start], [end], handle_impossible_answer=False, **kwargs)
    assert without[0]["answer"] != ""


def test_question_global_attention_covers_tokens_before_first_separator():
    import torch

    sep = 2
    ids = torch.tensor([[0, 7, 8, 2, 2, 9, 9, 2, 1, 1],
                        [0, 7, 2, 2, 9, 2, 1, 1, 1, 1],
                        [0, 7, 7, 7, 7, 7, 7, 7, 7, 7]])
    mask = question_global_attention(ids, sep)
    assert mask.tolist() == [[i < 3 for i in range(10)], [i < 2 for i in range(10)],
                             [False] * 10]


def test_options_defaults_and_validation():
    options = QuestionAnsweringOptions()
    assert (options.top_k, options.doc_stride, options.max_answer_len, options.max_seq_len,
            options.max_question_len, options.handle_impossible_answer,
            options.align_to_words) == (1, None, 15, 384, 64, False, True)
    assert window_limits(options, 512) == (384, 128)
    assert window_limits(options, 128) == (128, 64)  # capped by the model, stride follows
    assert window_limits(QuestionAnsweringOptions(doc_stride=10), 128) == (128, 10)
    with pytest.raises(ValidationError, match=r"`doc_stride` must be smaller than `max_seq_len` "
                                              r"\(100\), got 100"):
        QuestionAnsweringOptions(max_seq_len=100, doc_stride=100)
    for bad in ({"top_k": 0}, {"max_answer_len": 0}, {"max_seq_len": 4}, {"topk": 2}):
        with pytest.raises(ValidationError):
            QuestionAnsweringOptions(**bad)


def test_check_model_needs_a_question_answering_head():
    task = QuestionAnswering()
    task.check_model(SimpleNamespace(architectures=["BertForQuestionAnswering"],
                                     model_type="bert"), QuestionAnsweringOptions())
    with pytest.raises(ModelMismatch, match="ForQuestionAnswering.*BertForSequenceClassification"):
        task.check_model(SimpleNamespace(architectures=["BertForSequenceClassification"],
                                         model_type="bert"), QuestionAnsweringOptions())
    with pytest.raises(ModelMismatch, match="a bare bert model"):
        task.check_model(SimpleNamespace(architectures=None, model_type="bert"),
                         QuestionAnsweringOptions())
