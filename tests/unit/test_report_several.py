"""The run report, metrics and dataset card of a job with several tasks, from outputs written
by hand (no model, no Ray): each task's single-task output columns, prefixed, beside a manifest
of the shape the runner records (tests/run_records.py). Each task's section and metrics must be
what its own single-task job's report gives on the same rows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from corpusmill.jobs.reporting.evaluate import headline, score_table
from corpusmill.jobs.stores.output import read_manifest
from corpusmill.jobs.reporting.report import (
    _tokenization, build_report, report_after_run, summarize_panel, write_report,
)
from corpusmill.operators.plan import ERROR
from corpusmill.pipelines.registry import get_task
from corpusmill.spec import parse_spec
from tests.run_records import joined_output, with_column, write_output, write_several_output

ROWS = 12
IDS = [f"c.parquet:{i}" for i in range(ROWS)]
TEXTS = [f"text {i}" if i != 7 else None for i in range(ROWS)]
SENTIMENT = ["POS", "NEG", "NEU", "POS", "POS", "NEG", "NEU", None, "POS", "NEG", "POS", "NEU"]
TOPIC = ["sport", "food", "bank", "food", "food", "sport", "bank", None, "bank", "sport", "food",
         "food"]
GOLD_SENTIMENT = ["POS", "NEG", "POS", None, "POS", "NEU", "NEU", "POS", "NEG", "NEG", None,
                  "NEU"]
GOLD_TOPIC = ["sport", "bank", "bank", "food", "food", "sport", "food", "bank", "bank", "food",
              "food", "sport"]
TOPIC_FAILS = 4  # the topic model failed on this row too (a row only one task failed on)


def classifier_output(labels: list, failed: set[int]) -> pa.Table:
    """A text-classification job's output columns: label, score, labels, error."""
    fields = {f.name: f for f in get_task("text-classification").output_fields()}
    scores = [None if i in failed else 0.5 + 0.04 * i for i in range(len(labels))]
    labels = [None if i in failed else v for i, v in enumerate(labels)]
    return pa.table({
        "label": pa.array(labels, fields["label"].type),
        "score": pa.array(scores, fields["score"].type),
        "labels": pa.array([None if v is None else [{"label": v, "score": s}]
                            for v, s in zip(labels, scores)], fields["labels"].type),
        ERROR: pa.array([("column 'text' is null" if i == 7 else "model said no")
                         if i in failed else None for i in range(len(labels))], pa.string())})


def embedding_output(failed: set[int]) -> pa.Table:
    vectors = [None if i in failed else [float(i), 1.0, 0.0, 2.0] for i in range(ROWS)]
    return pa.table({"embedding": pa.array(vectors, pa.list_(pa.float32(), 4)),
                     ERROR: pa.array(["column 'text' is null" if i in failed else None
                                      for i in range(ROWS)], pa.string())})


def base_table() -> pa.Table:
    return pa.table({"row_id": IDS, "text": TEXTS, "stars": GOLD_SENTIMENT,
                     "topic_gold": GOLD_TOPIC})


OUTPUTS = {"sentiment": lambda: classifier_output(SENTIMENT, {7}),
           "topic": lambda: classifier_output(TOPIC, {7, TOPIC_FAILS}),
           "vec": lambda: embedding_output({7})}


def several_spec(tmp_path, **changes) -> dict:
    spec = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
            "tasks": {"sentiment": {"task": "text-classification", "model": "org/sentiment",
                                    "evaluate": {"gold": "stars"}},
                      "topic": {"task": "text-classification", "model": "org/topic",
                                "options": {"top_k": 2}, "evaluate": {"gold": "topic_gold"}},
                      "vec": {"task": "feature-extraction", "model": "org/vec"}}}
    spec.update(changes)
    return spec


def write_job(tmp_path, **settings):
    """A job with three tasks (two scored against their own gold column, one not) written
    as its output folder and manifest; returns (spec, joined table)."""
    spec = parse_spec(several_spec(tmp_path))
    table = joined_output(base_table(), {name: make() for name, make in OUTPUTS.items()})
    write_several_output(spec, table, **settings)
    return spec, table


def single_task_table(name: str) -> pa.Table:
    """What the task's own single-task job writes for the rows: id, kept columns, outputs."""
    base = base_table()
    out = OUTPUTS[name]()
    for column in out.column_names:
        base = base.append_column(column, out.column(column))
    return base


def test_report_has_a_section_per_task_over_its_own_columns(tmp_path):
    spec, table = write_job(tmp_path, seconds={"sentiment": 3.0, "topic": 1.0, "vec": 0.5},
                            tokenized_rows=ROWS)
    written = write_report(spec.output)
    report = json.loads(open(written["report.json"]).read())
    assert [t["name"] for t in report["tasks"]] == ["sentiment", "topic", "vec"]
    assert report["job"]["tasks"] == {"sentiment": "text-classification",
                                      "topic": "text-classification",
                                      "vec": "feature-extraction"}
    sentiment, topic, vec = report["tasks"]
    assert (sentiment["model"], topic["options"]["top_k"], vec["prefix"]) == (
        "org/sentiment", 2, "vec_")
    # each task's rows: a row fails for a task on its own error, not the joined one
    assert sentiment["rows"] == {"ok": ROWS - 1, "errored": 1}
    assert topic["rows"] == {"ok": ROWS - 2, "errored": 2}
    assert report["rows"]["errored"] == 2  # the joined error: any task's
    # the panels a single-task report shows, over the task's own rows
    labels = {p["fact"]: p for p in topic["outputs"]}["label"]
    ok = [v for i, v in enumerate(TOPIC) if i not in (7, TOPIC_FAILS)]
    assert labels["counts"] == {k: ok.count(k) for k in ("food", "bank", "sport")}
    assert labels["rows"] == len(ok)
    (norm,) = vec["outputs"]
    assert norm["fact"] == "norm" and norm["n"] == ROWS - 1
    assert norm["max"] == pytest.approx(np.linalg.norm([11.0, 1.0, 0.0, 2.0]))
    # the same panels as the task's single-task report on the same rows
    single = single_task_table("topic")
    task = get_task("text-classification")
    ok_rows = single.filter(pc.is_null(single.column(ERROR)))
    facts = pd.DataFrame(task.report_facts(ok_rows.select(["label", "score", "labels"])))
    for panel, got in zip(task.report_panels(None), topic["outputs"]):
        assert summarize_panel(panel, facts, ok_rows.num_rows) == got
    # the tasks' times side by side, and one tokenization for all three
    assert [t["time"] for t in report["tasks"]] == [
        {"rows": ROWS, "seconds": 3.0, "share": pytest.approx(3 / 4.5),
         "rows_per_second": ROWS / 3.0},
        {"rows": ROWS, "seconds": 1.0, "share": pytest.approx(1 / 4.5),
         "rows_per_second": ROWS / 1.0},
        {"rows": ROWS, "seconds": 0.5, "share": pytest.approx(0.5 / 4.5),
         "rows_per_second": ROWS / 0.5}]
    assert report["tokenization"] == {"rows": ROWS, "rows_tokenized": ROWS, "tokenizations": 1.0,
                                      "tasks": 3, "shared": "all"}
    # the per-task stages are side by side, not stages beside the summed inference
    assert [s["stage"] for s in report["time"]["stages"]] == [
        "read", "tokenize", "inference", "postprocess", "write"]
    html = open(written["report.html"]).read()
    for name in ("sentiment", "topic", "vec"):
        assert f"<h2>Task <code>{name}</code></h2>" in html
        assert f"<h2><code>{name}</code>: outputs</h2>" in html
    assert "<h2>Tasks</h2>" in html and "tokenized once for the 3 tasks" in html
    assert "Inference busy time by task" in html
    assert "<title>corpusmill report: 3 tasks: sentiment, topic, vec job" in html
    assert "http://" not in html and "<script" not in html


def test_metrics_per_task_equal_the_single_task_evaluate_on_the_same_rows(tmp_path):
    spec, _ = write_job(tmp_path)
    report = build_report(spec.output, read_manifest(spec.output))
    assert set(report["metrics"]["tasks"]) == {"sentiment", "topic"}  # vec has no evaluate
    task = get_task("text-classification")
    for name, one in spec.task_specs().items():
        if one.evaluate_options is None:
            continue
        alone = score_table(one, task, single_task_table(name), "row_id")
        result = report["metrics"]["tasks"][name]
        assert result == {"name": name, **alone}
        assert result["metrics"]["accuracy"] > 0
    # a row only the topic task failed on is left out of its metric only
    sentiment, topic = (report["metrics"]["tasks"][name] for name in ("sentiment", "topic"))
    assert topic["rows"]["errored"] == 2 and sentiment["rows"]["errored"] == 1
    # the files: metrics.json holds every task's; the lines and the page label them by task
    written = write_report(spec.output)
    assert json.loads(open(written["metrics.json"]).read()) == report["metrics"]
    html = open(written["report.html"]).read()
    assert "<h2><code>sentiment</code>: quality against <code>stars</code></h2>" in html
    assert "<h2><code>topic</code>: quality against <code>topic_gold</code></h2>" in html
    lines = report_after_run(spec.output, read_manifest(spec.output))
    assert lines[0].startswith("sentiment (text-classification) against 'stars': accuracy ")
    assert lines[:2] == tuple(headline(sentiment))
    assert lines[2].startswith("topic (text-classification) against 'topic_gold': accuracy ")
    assert lines[-2].startswith("inference busy time by task: sentiment 1 s for 12 rows, topic "
                                "1 s for 12 rows, vec 1 s for 12 rows; tokenized once")
    assert lines[-1].endswith("report.html")


def test_a_task_section_shows_its_change_in_an_incremental_run(tmp_path):
    spec = parse_spec(several_spec(tmp_path))
    table = joined_output(base_table(), {name: make() for name, make in OUTPUTS.items()})
    earlier = with_column(table.slice(0, 4), "row_id", [f"old:{i}" for i in range(4)])
    earlier = with_column(earlier, "sentiment_label", ["OLD"] * 4)
    write_several_output(spec, table, earlier=earlier)
    report = build_report(spec.output, read_manifest(spec.output))
    assert report["drift"] is None  # per task
    sentiment, topic, _ = report["tasks"]
    (labels,) = [p for p in sentiment["drift"]["panels"] if p["kind"] == "counts"]
    assert labels["before"]["OLD"] == 1.0 and labels["tvd"] == pytest.approx(1.0)
    (labels,) = [p for p in topic["drift"]["panels"] if p["kind"] == "counts"]
    assert labels["tvd"] < 1.0
    assert sentiment["drift"]["rows_new"] == ROWS - 1 and sentiment["drift"]["rows_before"] == 4


@pytest.mark.parametrize("tokenized, shared", [(12, "all"), (24, "some"), (36, "none")])
def test_tokenization_shared_by_all_some_or_none_of_the_tasks(tokenized, shared):
    stats = {"stages": {"tokenize": {"rows": tokenized, "seconds": 1.0}}}
    summary = {"rows_in": 20, "rows_before": 8}  # this run: 12 rows
    result = _tokenization(stats, summary, tasks=3)
    assert result["shared"] == shared and result["tokenizations"] == tokenized / 12
    assert _tokenization({}, summary, tasks=3) is None  # not recorded


def test_report_without_statistics_says_not_recorded(tmp_path):
    spec, _ = write_job(tmp_path, stats=False)
    report = build_report(spec.output, read_manifest(spec.output))
    assert all(t["time"] is None and t["placement"] is None for t in report["tasks"])
    assert report["tokenization"] is None
    html = open(write_report(spec.output)["report.html"]).read()
    assert "tokenization: not recorded" in html


def test_dataset_card_lists_each_task(tmp_path):
    from huggingface_hub import DatasetCard

    spec, _ = write_job(tmp_path)
    card = DatasetCard.load(write_report(spec.output)["README.md"])
    made = card.data.corpusmill
    assert made["tasks"]["topic"] == {"task": "text-classification", "model": "org/topic",
                                      "revision": None, "options": {
                                          "top_k": 2, "function_to_apply": "default"},
                                      "max_length": None}
    assert set(made["tasks"]) == {"sentiment", "topic", "vec"}
    assert made["metrics"]["sentiment"]["gold"] == "stars"
    assert card.data.tags == ["corpusmill", "text-classification", "feature-extraction"]
    assert card.data.task_categories == ["text-classification", "feature-extraction"]
    assert "- `vec` (columns `vec_*`): task `feature-extraction` with model `org/vec`" in card.text
    assert "task `text-classification` with model `org/topic`; options: " in card.text


def test_single_task_report_has_no_task_sections(tmp_path):
    """A single-task job's report keeps its shape: no `tasks`, its metrics one result."""
    from types import SimpleNamespace

    spec = parse_spec({"task": "text-classification", "model": "org/sentiment",
                       "input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
                       "evaluate": {"gold": "stars"}})
    write_output(SimpleNamespace(spec=spec), single_task_table("sentiment"))
    report = build_report(spec.output, read_manifest(spec.output))
    assert "tasks" not in report and "tokenization" not in report
    assert "name" not in report["metrics"] and report["metrics"]["task"] == "text-classification"
    assert [p["fact"] for p in report["outputs"]] == ["label", "score"]


def test_cli_report_rebuilds_the_several_task_report(tmp_path, capsys):
    from corpusmill.jobs import cli

    spec, _ = write_job(tmp_path, stats=False)
    assert cli.main(["report", spec.output]) == cli.EXIT_OK
    assert "report.html" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / ".corpusmill" / "report" / "report.json").read_text())
    assert [t["name"] for t in report["tasks"]] == ["sentiment", "topic", "vec"]
    assert set(report["metrics"]["tasks"]) == {"sentiment", "topic"}
