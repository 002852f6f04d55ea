"""Pure score functions match transformers' choices."""
import numpy as np
from transformers import BertConfig

from corpusmill.pipelines.base import softmax, top_k_indices
from corpusmill.pipelines.text_classification import score_function, scores_from_logits


def test_default_function_follows_problem_type():
    assert score_function(BertConfig(num_labels=3), "default") == "softmax"
    assert score_function(BertConfig(num_labels=1), "default") == "sigmoid"
    multi = BertConfig(num_labels=3, problem_type="multi_label_classification")
    assert score_function(multi, "default") == "sigmoid"
    assert score_function(BertConfig(num_labels=1, problem_type="regression"), "default") == "none"
    assert score_function(BertConfig(num_labels=3), "sigmoid") == "sigmoid"


def test_softmax_is_stable_and_sums_to_one():
    out = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.allclose(out, [[0.5, 0.5, 0.0]])


def test_top_k_ties_rank_lower_index_first():
    assert top_k_indices(np.array([[0.2, 0.4, 0.4, 0.1]]), 3).tolist() == [[1, 2, 0]]


def test_none_returns_logits():
    logits = np.array([[1.5, -2.0]], dtype=np.float32)
    assert np.array_equal(scores_from_logits(logits, "none"), logits)
