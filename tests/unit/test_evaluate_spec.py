"""The `evaluate` block of a job spec, validated by the task; the sample's length strata."""
import numpy as np
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.sample import stratified_choice
from corpusmill.spec import parse_spec

BASE = {"task": "token-classification", "model": "org/model", "input": "in", "output": "out"}


def error_of(**changes) -> str:
    with pytest.raises(JobError) as e:
        parse_spec({**BASE, **changes})
    return str(e.value)


def test_evaluate_block_is_validated_by_the_task():
    spec = parse_spec({**BASE, "evaluate": {"gold": "tags", "gold_format": "spans"}})
    assert spec.evaluate_options.gold == "tags"
    assert spec.evaluate_options.gold_format == "spans"
    msg = error_of(evaluate={"gold": "tags", "format": "bio"})
    assert "unknown token-classification evaluate key 'evaluate.format'" in msg
    assert "gold_format" in msg
    assert "evaluate.gold_format" in error_of(evaluate={"gold": "tags", "gold_format": "iob"})
    assert "missing required" in error_of(evaluate={"gold_format": "bio"})


def test_a_task_without_a_metric_refuses_an_evaluate_block():
    msg = error_of(task="feature-extraction", evaluate={"gold": "x"})
    assert "feature-extraction has no metric against gold" in msg
    assert "text-classification" in msg and "question-answering" in msg


def test_evaluate_does_not_change_the_job_id():
    assert (parse_spec({**BASE, "evaluate": {"gold": "tags"}}).job_id
            == parse_spec(BASE).job_id)


def test_stratified_sample_keeps_the_length_mix_and_is_seeded():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(5, 20, 900), rng.integers(2000, 5000, 100)])
    chosen = stratified_choice(lengths, 100, seed=3)
    assert len(chosen) == len(set(chosen)) == 100
    assert (lengths[chosen] >= 2000).sum() == 10  # the long tenth of the corpus, a tenth
    assert stratified_choice(lengths, 100, seed=3).tolist() == chosen.tolist()
    assert stratified_choice(lengths, 100, seed=4).tolist() != chosen.tolist()
    assert stratified_choice(lengths[:7], 100, seed=3).tolist() == list(range(7))
