"""The seq2seq example jobs (summarize_local, translate_local, text2text_local) run through the
CLI on the sample corpus with the tiny models make_tiny_seq2seq.py builds: every article once,
the task's fixed schema, no row errors."""
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
CORPUS_IDS = pq.read_table(EXAMPLES / "data" / "articles.parquet",
                           columns=["article_id"]).column("article_id").to_pylist()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seq2seq-models")
    runpy.run_path(str(EXAMPLES / "make_tiny_seq2seq.py"), run_name="not_main")["main"](str(root))
    return root


@pytest.mark.parametrize("job, model, column", [
    ("summarize_local.yaml", "tiny-t5", "summary_text"),
    ("translate_local.yaml", "tiny-marian", "translation_text"),
    ("text2text_local.yaml", "tiny-t5", "generated_text"),
])
def test_seq2seq_example_runs_every_row_once(tmp_path, ray_session, models, job, model, column):
    out = tmp_path / "out"
    assert main(["run", str(EXAMPLES / job), "--set", f"model={models / model}",
                 "--set", f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    assert table.column_names == ["article_id", "title", column, "input_truncated", "error"]
    assert table.schema.field(column).type == pa.string()
    assert table.schema.field("input_truncated").type == pa.bool_()
    assert sorted(table.column("article_id").to_pylist()) == sorted(CORPUS_IDS)
    assert table.column("error").null_count == table.num_rows
    texts = table.column(column).to_pylist()
    assert all(isinstance(t, str) for t in texts)
    assert len(set(texts)) > len(texts) // 4, "a random model giving one output proves little"
    if job == "summarize_local.yaml":  # long_input: chunk summarises long texts, cuts none
        assert not any(table.column("input_truncated").to_pylist())


def test_truncated_inputs_are_flagged_and_counted(tmp_path, ray_session, models, capsys):
    """Truncation is never silent: each cut row says so, and the summary counts them."""
    out = tmp_path / "out"
    assert main(["run", str(EXAMPLES / "summarize_local.yaml"),
                 "--set", f"model={models / 'tiny-t5'}",
                 "--set", f"output={out}", "--set", "options.long_input=truncate",
                 "--set", "batching.max_length=24"]) == EXIT_OK
    flags = pq.read_table(out, columns=["input_truncated"]).column("input_truncated").to_pylist()
    cut = sum(flags)
    assert 0 < cut and None not in flags
    assert f"{cut} row(s) had inputs longer than the model's window and were cut to it" \
        in capsys.readouterr().out

