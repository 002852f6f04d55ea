"""A job with several tasks through `corpusmill.run` on a local Ray, one of them scored against
its gold column: the run's lines, report, metrics and dataset card give each task its own
section and metrics, and `corpusmill evaluate` scores the same."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

import corpusmill
from corpusmill.jobs.cli import EXIT_OK, main
from tests.conftest import write_parquet

# a whole job with two actor pools on Ray: tens of seconds on 2 cores
pytestmark = pytest.mark.slow

TEXTS = ["a fine day at the beach", None, "the senate passed the budget", "butter sugar bake",
         "great match, terrible referee", "phone screen cracked", "loved the hotel service",
         "telescope galaxy", "market rates rose", "the quick brown fox"]
GOLD = ["LABEL_A", "LABEL_B", None, "LABEL_C", "LABEL_B", "LABEL_A", "LABEL_C", "LABEL_B",
        None, "LABEL_A"]


def test_two_tasks_report_metrics_of_the_scored_one(tmp_path, tiny, ray_session, capsys):
    write_parquet(tmp_path / "in" / "rows.parquet", {"text": TEXTS, "gold": GOLD})
    spec = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
            "resources": {"concurrency": 1},
            "tasks": {"sentiment": {"task": "text-classification", "model": tiny.classifier,
                                    "evaluate": {"gold": "gold"}},
                      "vec": {"task": "feature-extraction", "model": tiny.encoder}}}
    result = corpusmill.run(spec)
    assert result.partial  # the null text is an error row of both tasks
    out = pq.read_table(result.output).to_pylist()
    scored = [r for r in out if r["gold"] is not None and r["sentiment_error"] is None]
    accuracy = sum(r["sentiment_label"] == r["gold"] for r in scored) / len(scored)

    # the lines after the run: the scored task's metrics labelled with its name, the times
    lines = result.summary.report
    assert lines[0].startswith("sentiment (text-classification) against 'gold': accuracy ")
    assert lines[1].startswith(f"{len(scored)} row(s) scored")
    assert any(line.startswith("inference busy time by task: sentiment ") for line in lines)

    metrics = json.loads(open(result.report["metrics.json"]).read())
    assert set(metrics["tasks"]) == {"sentiment"}
    assert metrics["tasks"]["sentiment"]["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["tasks"]["sentiment"]["rows"]["scored"] == len(scored)

    report = json.loads(open(result.report["report.json"]).read())
    sentiment, vec = report["tasks"]
    assert (sentiment["name"], sentiment["task"], vec["name"], vec["task"]) == (
        "sentiment", "text-classification", "vec", "feature-extraction")
    for section in (sentiment, vec):  # each task's inference recorded beside the other's
        assert section["time"]["rows"] == len(TEXTS) and section["time"]["seconds"] > 0
        assert section["rows"] == {"ok": len(TEXTS) - 1, "errored": 1}
        assert section["placement"]["device"] == "cpu"
    assert {p["fact"] for p in sentiment["outputs"]} == {"label", "score"}
    assert [p["fact"] for p in vec["outputs"]] == ["norm"]
    assert report["tokenization"]["rows"] == len(TEXTS)
    html = open(result.report["report.html"]).read()
    assert "<h2><code>sentiment</code>: quality against <code>gold</code></h2>" in html
    assert "<h2>Task <code>vec</code></h2>" in html
    card = open(result.card).read()
    assert "- `sentiment` (columns `sentiment_*`): task `text-classification`" in card
    assert "- `vec` (columns `vec_*`): task `feature-extraction`" in card

    # corpusmill evaluate scores the finished output the same way
    job = tmp_path / "job.json"
    job.write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["evaluate", str(job)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert printed.startswith("sentiment (text-classification) against 'gold': accuracy ")
    again = json.loads(open(result.report["metrics.json"]).read())
    assert again["tasks"]["sentiment"]["metrics"] == metrics["tasks"]["sentiment"]["metrics"]
