"""The question-answering example job (jobs/examples/qa_local.yaml) runs through the CLI with a
locally built model: every question answered exactly once, the fixed schema, and every answer
is the span of its context that start and end point to, including the ~20,000-word digest."""
from __future__ import annotations

import runpy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, main

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"
QUESTIONS = pq.read_table(EXAMPLES / "data" / "questions.parquet")


def test_question_answering_example_with_a_locally_built_model(tmp_path, ray_session):
    model = tmp_path / "minilm-qa"
    runpy.run_path(str(EXAMPLES / "make_minilm_qa.py"), run_name="not_main")["main"](str(model))
    out = tmp_path / "qa"
    assert main(["run", str(EXAMPLES / "qa_local.yaml"), "--set", f"model={model}",
                 "--set", f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    assert table.column_names == ["question_id", "article_id", "question", "context", "answer",
                                  "score", "start", "end", "answers", "error"]
    schema = table.schema
    assert (schema.field("score").type, schema.field("start").type) == (pa.float32(), pa.int32())
    assert schema.field("answers").type.value_type.names == ["answer", "score", "start", "end"]
    ids = table.column("question_id").to_pylist()
    assert sorted(ids) == sorted(QUESTIONS.column("question_id").to_pylist())  # each once
    rows = table.to_pylist()
    assert max(len(r["context"].split()) for r in rows) >= 19000
    for row in rows:
        assert row["error"] is None, row["question_id"]
        assert 1 <= len(row["answers"]) <= 2
        assert row["answers"][0]["answer"] == row["answer"]
        for answer in row["answers"]:
            assert row["context"][answer["start"]:answer["end"]] == answer["answer"]
            assert answer["score"] > 0  # a span probability (summed where answers repeat)
    assert len({r["answer"] for r in rows}) > 50  # answers follow the context
