"""Parity with transformers 4.57.6's question-answering pipeline (the last release that has it)
on the same saved tiny BERT and Longformer models, against its answers recorded once
(tests/qa_reference.py, tests/data/qa_reference_457.json): identical answer, start and end for
every row, scores within 1e-4, over 210 varied rows (contexts of 1 token to 20,000+ words,
emoji/CJK/accents, repeated and differently cased phrases whose scores merge, empty inputs) and
several option sets."""
from __future__ import annotations

import pytest

from tests.corpora import run_task
from tests.qa_reference import ROWS, RUNS, build_models, recorded_answers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("qa-models"))


@pytest.fixture(scope="module")
def reference(models):
    """Every case's recorded answers, once the models and cases are checked to be the ones
    they were recorded on."""
    return recorded_answers(models)


def run_ours(tmp_path, model, options, rows):
    data = {"q": [r["question"] for r in rows], "c": [r["context"] for r in rows]}
    # a small token budget mixes windows of different rows in micro-batches
    return run_task(tmp_path, "question-answering", model, data, options=options,
                    columns={"question": "q", "context": "c"},
                    batching={"max_tokens": 2048, "window_rows": 64})


# the full 210-row cases (a 20,500-word context among them) are the slow ones
CASES = [pytest.param(name, marks=pytest.mark.slow) if rows is ROWS else name
         for name, (_, _, rows) in RUNS.items()]


@pytest.mark.parametrize("run", CASES)
def test_answers_match_transformers_pipeline(tmp_path, models, reference, run):
    model, options, rows = RUNS[run]
    ours = run_ours(tmp_path, models[model], options, rows)
    expected_rows = reference[run]
    answered = 0
    for row, got, expected in zip(rows, ours, expected_rows):
        where = f"{run}: question={row['question'][:40]!r} context={row['context'][:60]!r}"
        if isinstance(expected, dict):  # the pipeline refused the row: so do we
            assert got["error"] is not None and got["answers"] is None, (where, expected)
            continue
        assert got["error"] is None, (where, got["error"])
        assert [(a["answer"], a["start"], a["end"]) for a in got["answers"]] == \
               [(a["answer"], a["start"], a["end"]) for a in expected], where
        for mine, theirs in zip(got["answers"], expected):
            assert mine["score"] == pytest.approx(theirs["score"], abs=1e-4), where
            assert row["context"][mine["start"]:mine["end"]] == mine["answer"]
        best = got["answers"][0]
        assert (got["answer"], got["score"], got["start"], got["end"]) == \
               (best["answer"], best["score"], best["start"], best["end"])
        answered += bool(best["answer"])
    assert answered >= 0.8 * len(rows), "most rows must get a non-empty answer"
    assert len({r["answer"] for r in ours}) >= 0.3 * len(rows), "answers must vary with the text"


def test_a_changed_model_is_refused_with_the_command_that_rerecords(tmp_path, models):
    """Answers recorded on other weights would compare against the wrong thing: refused."""
    from tests.tiny_question_answering import build_bert_qa

    other = build_bert_qa(tmp_path / "bert-seed-99", seed=99)
    with pytest.raises(AssertionError, match="record_qa_reference.py"):
        recorded_answers({**models, "bert": other})
