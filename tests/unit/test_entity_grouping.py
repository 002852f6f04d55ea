"""Entity grouping and window merging of token-classification, without a model: small cases
whose answer follows from the documented semantics, and randomised comparisons with
transformers' own TokenClassificationPipeline methods (called on a stub pipeline that has only
a label map and a token joiner)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError
from transformers.pipelines.token_classification import (
    AggregationStrategy, TokenClassificationPipeline,
)

from corpusmill.pipelines.token_classification import (
    Entity, PreEntity, TokenClassificationOptions, default_stride, gather_pre_entities,
    group_entities, merge_overlapping, window_entities, window_stride, word_entities,
)

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC", "X-Y"]
ID2LABEL = dict(enumerate(LABELS))


def join(tokens):
    return " ".join(tokens)


def stub_pipeline():
    """transformers' pipeline object without a model: its grouping methods need only these."""
    pipe = TokenClassificationPipeline.__new__(TokenClassificationPipeline)
    pipe.tokenizer = SimpleNamespace(convert_tokens_to_string=join)
    pipe.model = SimpleNamespace(config=SimpleNamespace(id2label=ID2LABEL))
    return pipe


def one_hot(label: str, score: float = 0.9) -> np.ndarray:
    scores = np.full(len(LABELS), (1 - score) / (len(LABELS) - 1), dtype=np.float32)
    scores[LABELS.index(label)] = score
    return scores


def pre(word, label, start, end, is_subword=False, score=0.9):
    return PreEntity(word, one_hot(label, score), start, end, is_subword)


def as_tuples(entities):
    return [(e.entity, round(float(e.score), 6), e.word, e.start, e.end) for e in entities]


def hf_tuples(entities, key):
    return [(e[key], round(float(e["score"]), 6), e["word"], e["start"], e["end"])
            for e in entities]


# ---- small cases

def test_b_label_starts_a_new_group_and_i_continues_it():
    tokens = [pre("ann", "B-PER", 0, 3), pre("lee", "I-PER", 4, 7), pre("bob", "B-PER", 8, 11),
              pre("in", "O", 12, 14), pre("rome", "B-LOC", 15, 19)]
    groups = group_entities(window_entities(tokens, "none", ID2LABEL, join, []), join)
    assert [(g.entity, g.word, g.start, g.end) for g in groups] == [
        ("PER", "ann lee", 0, 7), ("PER", "bob", 8, 11), ("O", "in", 12, 14),
        ("LOC", "rome", 15, 19)]
    assert groups[0].score == pytest.approx(0.9)


def test_label_without_bio_prefix_continues_itself():
    tokens = [pre("a", "MISC", 0, 1), pre("b", "MISC", 2, 3), pre("c", "I-PER", 4, 5)]
    kept = window_entities(tokens, "simple", ID2LABEL, join, ["O"])
    assert [(e.entity, e.word) for e in kept] == [("MISC", "a b"), ("PER", "c")]


def test_ignore_labels_apply_to_labels_without_aggregation_and_to_groups_with_it():
    tokens = [pre("ann", "B-PER", 0, 3), pre("in", "O", 4, 6), pre("rome", "B-LOC", 7, 11)]
    assert [e.entity for e in window_entities(tokens, "none", ID2LABEL, join, ["O"])] == [
        "B-PER", "B-LOC"]
    assert [e.entity for e in window_entities(tokens, "none", ID2LABEL, join, ["B-PER"])] == [
        "O", "B-LOC"]
    assert [e.entity for e in window_entities(tokens, "simple", ID2LABEL, join, ["PER", "O"])] == [
        "LOC"]


@pytest.mark.parametrize("strategy, label, score", [
    ("first", "B-LOC", 0.6),    # the first token decides
    ("max", "I-PER", 0.95),     # the most confident token decides
])
def test_word_strategies_give_a_word_one_label(strategy, label, score):
    tokens = [pre("new", "B-LOC", 0, 3, score=0.6), pre("##ark", "I-PER", 3, 6, True, 0.95)]
    (word,) = word_entities(tokens, strategy, ID2LABEL, join)
    assert (word.entity, word.start, word.end) == (label, 0, 6)
    assert word.score == pytest.approx(score)


def test_average_strategy_takes_the_best_of_the_averaged_scores():
    tokens = [pre("new", "B-LOC", 0, 3, score=0.6), pre("##ark", "I-PER", 3, 6, True, 0.5)]
    (word,) = word_entities(tokens, "average", ID2LABEL, join)
    expected = (tokens[0].scores + tokens[1].scores) / 2
    assert word.entity == LABELS[int(expected.argmax())]
    assert word.score == pytest.approx(expected.max())


def test_a_window_that_starts_inside_a_word_starts_a_word_there():
    tokens = [pre("##ark", "B-LOC", 0, 3, True), pre("##s", "I-LOC", 3, 4, True)]
    words = word_entities(tokens, "first", ID2LABEL, join)
    assert [(w.start, w.end) for w in words] == [(0, 4)]


def test_subwords_from_token_strings_or_from_spaces():
    text = "newark is big"
    tokens = ["new", "##ark", "is", "[UNK]"]
    offsets = np.array([[0, 3], [3, 6], [7, 9], [10, 13]])
    scores = np.stack([one_hot("O")] * 4)
    unknown = np.array([False, False, False, True])
    special = np.zeros(4, bool)
    aware = gather_pre_entities(text, tokens, unknown, scores, offsets, special, word_aware=True)
    assert [(p.word, p.is_subword) for p in aware] == [
        ("new", False), ("##ark", True), ("is", False), ("big", False)]
    spaced = gather_pre_entities(text, ["new", "ark", "is", "[UNK]"], unknown, scores, offsets,
                                 special, word_aware=False)
    assert [p.is_subword for p in spaced] == [False, True, False, False]


def test_special_tokens_are_left_out():
    offsets = np.array([[0, 0], [0, 2], [0, 0]])
    got = gather_pre_entities("hi", ["[CLS]", "hi", "[SEP]"], np.zeros(3, bool),
                              np.stack([one_hot("O")] * 3), offsets,
                              np.array([True, False, True]), word_aware=True)
    assert [(p.word, p.start, p.end) for p in got] == [("hi", 0, 2)]


def test_overlapping_entities_keep_the_longer_then_the_better_scored():
    first_window = [Entity("LOC", 0.9, "new", 10, 13), Entity("PER", 0.5, "ann", 20, 23)]
    second_window = [Entity("LOC", 0.8, "new york", 10, 18), Entity("PER", 0.7, "ann", 20, 23),
                     Entity("ORG", 0.6, "acme", 30, 34)]
    merged = merge_overlapping(first_window + second_window)
    assert [(e.word, e.score) for e in merged] == [("new york", 0.8), ("ann", 0.7),
                                                   ("acme", 0.6)]


def test_an_entity_seen_twice_with_equal_scores_is_kept_once():
    twice = [Entity("LOC", 0.5, "rome", 4, 8), Entity("LOC", 0.5, "rome", 4, 8)]
    assert merge_overlapping(twice) == [twice[0]]
    assert merge_overlapping([]) == []


def test_stride_defaults_to_a_quarter_of_the_window_and_must_leave_new_tokens():
    assert default_stride(512, 2) == 127
    assert window_stride(None, 64, 2) == 15
    assert window_stride(0, 64, 2) == 0
    assert window_stride(61, 64, 2) == 61
    with pytest.raises(ValueError, match=r"`stride` must be less than the 62 text tokens"):
        window_stride(62, 64, 2)


def test_options_are_typed():
    assert TokenClassificationOptions().aggregation_strategy == "none"
    assert TokenClassificationOptions().ignore_labels == ["O"]
    assert TokenClassificationOptions().stride is None
    for bad in ({"aggregation_strategy": "mean"}, {"stride": -1}, {"strides": 4}):
        with pytest.raises(ValidationError):
            TokenClassificationOptions(**bad)


# ---- randomised comparisons with transformers' own methods

def random_pre_entities(rng: random.Random, n: int) -> list[PreEntity]:
    out, position = [], 0
    for i in range(n):
        scores = np.array([rng.random() for _ in LABELS], dtype=np.float32)
        scores /= scores.sum()
        length = rng.randint(1, 5)
        is_subword = i > 0 and rng.random() < 0.4
        start = position if is_subword else position + 1
        out.append(PreEntity(f"t{i}", scores, start, start + length, is_subword))
        position = start + length
    return out


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_window_entities_match_transformers_on_random_tokens(strategy):
    pipe, rng = stub_pipeline(), random.Random(strategy)
    for _ in range(200):
        tokens = random_pre_entities(rng, rng.randint(0, 30))
        ours = window_entities(tokens, strategy, ID2LABEL, join, ["O"])
        hf_pre = [{"word": p.word, "scores": p.scores, "start": p.start, "end": p.end,
                   "index": i, "is_subword": p.is_subword} for i, p in enumerate(tokens)]
        theirs = pipe.aggregate(hf_pre, AggregationStrategy(strategy))
        key = "entity" if strategy == "none" else "entity_group"
        theirs = [e for e in theirs if e[key] != "O"]
        assert as_tuples(ours) == hf_tuples(theirs, key)


def test_merge_matches_transformers_on_random_windows():
    pipe, rng = stub_pipeline(), random.Random(7)
    for _ in range(300):
        entities = []
        for _ in range(rng.randint(0, 25)):
            start = rng.randint(0, 60)
            entities.append(Entity(rng.choice(LABELS), rng.choice([0.25, 0.5, rng.random()]),
                                   f"w{start}", start, start + rng.randint(0, 8)))
        theirs = pipe.aggregate_overlapping_entities([vars(e).copy() for e in entities])
        assert [vars(e) for e in merge_overlapping(entities)] == theirs
