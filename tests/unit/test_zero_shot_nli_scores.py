"""zero-shot-classification's pure NLI pieces, without a model: which logit is entailment and
contradiction (transformers' rules), the scores transformers' pipeline computes, its label
order, and which mode `auto` means for a checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from corpusmill.pipelines.zero_shot_classification import (
    EMBEDDING, NLI, ZeroShotOptions, contradiction_index, entailment_index, nli_scores,
    pipeline_order, resolve_mode,
)

MNLI = {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}


def test_entailment_is_the_first_label_starting_with_entail_in_any_case():
    assert entailment_index(MNLI) == 2
    assert entailment_index({"entailment": 0, "neutral": 1, "contradiction": 2}) == 0
    assert entailment_index({"not_entailment": 1, "Entails": 0}) == 0
    assert entailment_index({"entails": 1, "entailment": 0}) == 1  # dict order, as the pipeline
    assert entailment_index({"NEGATIVE": 0, "POSITIVE": 1}) is None
    assert entailment_index(None) is None


def test_contradiction_is_first_unless_entailment_is():
    assert contradiction_index(2, 3) == 0
    assert contradiction_index(1, 2) == 0
    assert contradiction_index(0, 3) == 2  # transformers' -1
    assert contradiction_index(0, 2) == 1


def pipeline_formula(logits, independent):
    """transformers' postprocess, verbatim in numpy (no max shift)."""
    if independent:
        scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return scores[..., 1]
    entail = logits[..., 1]
    return np.exp(entail) / np.exp(entail).sum(-1, keepdims=True)


@pytest.mark.parametrize("independent", [False, True])
def test_scores_equal_the_pipeline_formula(independent):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(50, 5, 2)).astype(np.float32)  # (rows, labels, 2)
    ours = nli_scores(logits, independent)
    assert ours.shape == (50, 5) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, pipeline_formula(logits, independent), atol=1e-6)
    if not independent:
        np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("independent", [False, True])
def test_scores_stay_finite_where_the_plain_formula_overflows(independent):
    logits = np.array([[[0.0, 200.0], [0.0, 150.0], [300.0, 0.0]]], dtype=np.float32)
    ours = nli_scores(logits, independent)
    assert np.isfinite(ours).all()
    assert ours[0].argmax() == 0


def test_order_is_the_pipelines_reversed_argsort():
    rng = np.random.default_rng(1)
    for _ in range(100):
        scores = rng.choice(np.array([0.1, 0.5, 1.0], dtype=np.float32), size=6)  # ties
        assert pipeline_order(scores).tolist() == list(reversed(scores.argsort().tolist()))


def test_auto_means_nli_only_for_a_classifier_that_names_entailment():
    classifier = ["BertForSequenceClassification"]
    assert resolve_mode("auto", classifier, MNLI) == NLI
    assert resolve_mode("auto", classifier, {"NEGATIVE": 0, "POSITIVE": 1}) == EMBEDDING
    assert resolve_mode("auto", ["BertModel"], MNLI) == EMBEDDING
    assert resolve_mode("auto", None, None) == EMBEDDING
    assert resolve_mode(NLI, ["BertModel"], None) == NLI  # explicit: check_model judges it
    assert resolve_mode(EMBEDDING, classifier, MNLI) == EMBEDDING


def test_options_defaults_and_multi_label_refused_with_embedding_similarity():
    options = ZeroShotOptions(candidate_labels=["a", "b"])
    assert (options.mode, options.multi_label, options.hypothesis_template) == (
        "auto", False, "This example is {}.")
    assert options.hypotheses() == ["This example is a.", "This example is b."]
    assert ZeroShotOptions(candidate_labels=["a"], mode="nli", multi_label=True).multi_label
    with pytest.raises(ValidationError, match="multi_label applies to mode nli only"):
        ZeroShotOptions(candidate_labels=["a"], mode="embedding-similarity", multi_label=True)
