"""The run report for every task, from tiny models' real outputs (the operator chain run in this
process) beside a manifest of the shape the runner records; metrics against gold columns whose
right answers are known; `corpusmill report` and `corpusmill evaluate` on those outputs."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs import cli
from corpusmill.jobs.reporting.report import build_report, write_report
from corpusmill.jobs.stores.output import read_manifest
from tests import tiny_fill_mask, tiny_generation, tiny_question_answering, tiny_seq2seq
from tests import tiny_token_classification
from tests.conftest import write_parquet
from tests.corpora import WORDS
from tests.run_records import run_in_process, with_column, write_output

ROWS = 16
TEXTS = [" ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(2 + i % 7)) for i in range(ROWS)]
WRONG = "zzzz qqqq"  # never a model's answer
SPANS = pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())]))


def _labels(table, column):  # the best label of each row (None for error rows)
    values = table.column(column).to_pylist()
    return [v[0] if isinstance(v, list) else v for v in values]


def _answers(table):
    return table.column("answer").to_pylist()


def _top_tokens(table):
    return [None if p is None else p[0]["token_str"] for p in table.column("predictions").to_pylist()]


def _spans(table):
    return [None if e is None else [{"start": x["start"], "end": x["end"], "label": x["entity"]}
                                    for x in e] for e in table.column("entities").to_pylist()]


# task -> (model builder, columns, options, evaluate block, gold type, right answer per row,
#          metric that must be perfect on right answers, True when WRONG rows count against it)
CASES = {
    "text-classification": ("classifier", {}, {}, {}, pa.string(),
                            lambda t: _labels(t, "label"), "accuracy", True),
    "zero-shot-classification": ("encoder", {}, {"candidate_labels": ["sports", "food", "bank"]},
                                 {}, pa.string(), lambda t: _labels(t, "labels"), "accuracy",
                                 True),
    "token-classification": ("ner", {}, {"aggregation_strategy": "simple"},
                             {"gold_format": "spans"}, SPANS, _spans, "f1", False),
    "question-answering": ("qa", {"question": "q", "context": "text"}, {}, {},
                           pa.list_(pa.string()), lambda t: [None if a is None else [a, WRONG]
                                                             for a in _answers(t)],
                           "exact_match", True),
    "fill-mask": ("mlm", {}, {"top_k": 3}, {}, pa.string(), _top_tokens, "top1_accuracy", True),
    "feature-extraction": ("encoder", {}, {}, None, None, None, None, False),
    "text-generation": ("gpt2", {}, {"max_new_tokens": 4}, None, None, None, None, False),
    "summarization": ("t5", {}, {"max_new_tokens": 8}, {}, pa.string(),
                      lambda t: t.column("summary_text").to_pylist(), "rouge1", False),
    "translation": ("marian", {}, {"max_new_tokens": 8}, {}, pa.string(),
                    lambda t: t.column("translation_text").to_pylist(), "chrf", False),
    "text2text-generation": ("t5", {}, {"max_new_tokens": 8}, {}, pa.string(),
                             lambda t: t.column("generated_text").to_pylist(), "rouge1", False),
}
PERFECT = {"accuracy": 1.0, "f1": 1.0, "exact_match": 100.0, "top1_accuracy": 1.0,
           "rouge1": 1.0, "chrf": 100.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("report-models")
    return SimpleNamespace(
        classifier=tiny.classifier, encoder=tiny.encoder,
        ner=tiny_token_classification.build_bert_ner(root / "ner"),
        qa=tiny_question_answering.build_bert_qa(root / "qa"),
        mlm=tiny_fill_mask.build_bert_mlm(root / "mlm"),
        gpt2=tiny_generation.build_gpt2(root / "gpt2"),
        t5=tiny_seq2seq.build_t5(root / "t5"), marian=tiny_seq2seq.build_marian(root / "marian"))


def run_task(tmp_path, models, task: str, stats: bool = True):
    """Run the task on ROWS texts plus one null text (an error row); gold: the right answer on
    rows 0, 1 mod 4, WRONG on 2 mod 4 (where wrong answers count), null on 3 mod 4."""
    model, columns, options, evaluate, gold_type, right, _, counts_wrong = CASES[task]
    texts = [t + (" [MASK]" if task == "fill-mask" else "") for t in TEXTS] + [None]
    data = {"text": texts, "q": ["what is it?"] * len(texts)}
    if evaluate is not None:
        data["gold"] = pa.nulls(len(texts), gold_type)
    spec = {"task": task, "model": getattr(models, model), "input": str(
        write_parquet(tmp_path / "in" / "corpus.parquet", data)),
        "output": str(tmp_path / "out"), "columns": columns, "options": options,
        "batching": {"window_rows": 8}}
    if evaluate is not None:
        spec["evaluate"] = {"gold": "gold", **evaluate}
    plan, table = run_in_process(spec)
    if evaluate is not None:
        answers = right(table)
        wrong = [WRONG] if pa.types.is_list(gold_type) else WRONG
        gold = [None if a is None or i % 4 == 3 else (wrong if i % 4 == 2 and counts_wrong else a)
                for i, a in enumerate(answers)]
        table = with_column(table, "gold", gold)
    write_output(plan, table, stats=stats)
    return plan, table


@pytest.mark.parametrize("task", sorted(CASES))
def test_report_for_every_task(tmp_path, models, task):
    plan, table = run_task(tmp_path, models, task)
    written = write_report(plan.spec.output)
    report = json.loads(open(written["report.json"]).read())
    ok = table.filter(pc.is_null(table.column("error")))
    assert report["rows"]["out"] == table.num_rows == ROWS + 1
    assert report["rows"]["errored"] == 1
    # errors grouped by kind, with the failing row's id
    (group,) = report["errors"]
    assert group["count"] == 1 and group["example_ids"] == [f"corpus.parquet:{ROWS}"]
    assert "null" in group["message"]
    # the task's output distributions, over the rows without error
    outputs = {p["fact"]: p for p in report["outputs"]}
    assert outputs and all(p["rows"] == ok.num_rows for p in outputs.values())
    for panel in outputs.values():
        if panel["kind"] == "histogram":
            assert sum(panel["counts"]) + panel["above"] + panel["below"] == panel["n"] > 0
    if "label" in outputs:
        assert outputs["label"]["total"] == ok.num_rows
        assert sum(outputs["label"]["counts"].values()) + outputs["label"]["other"] == ok.num_rows
    if "entity_type" in outputs:  # entities per 1,000 rows
        entities = sum(len(e) for e in ok.column("entities").to_pylist())
        assert outputs["entity_type"]["total"] == entities
        assert sum(outputs["entity_type"]["rates"].values()) == pytest.approx(
            1000 * entities / ok.num_rows)
    if "empty" in outputs:
        assert outputs["empty"]["true"] == sum(not a for a in ok.column("answer").to_pylist())
    if "norm" in outputs:
        assert outputs["norm"]["n"] == ok.num_rows
    # time, tokens and placement from the manifest's statistics
    assert [s["stage"] for s in report["time"]["stages"]] == [
        "read", "tokenize", "inference", "postprocess", "write"]
    assert report["tokens"]["padding_efficiency"] == pytest.approx(18211 / 19004)
    assert report["placement"]["device"] == "cpu" and len(report["actors"]) == 2
    html = open(written["report.html"]).read()
    assert html.count("data:image/png;base64,") >= len(
        [p for p in outputs.values() if p["kind"] != "share"]) + 3  # + stages, time, actors
    assert "http://" not in html and "https://" not in html and "<script" not in html
    _check_metrics(task, report, written, table)


def _check_metrics(task, report, written, table):
    metric = CASES[task][6]
    if metric is None:
        assert report["metrics"] is None and "metrics.json" not in written
        return
    result = json.loads(open(written["metrics.json"]).read())
    assert result == report["metrics"]
    ok_rows = [i for i, e in enumerate(table.column("error").to_pylist()) if e is None]
    gold = table.column("gold").to_pylist()
    with_gold = [i for i in ok_rows if gold[i] not in (None, [])]
    assert result["rows"]["scored"] == len(with_gold)
    assert result["rows"]["gold_missing"] == sum(gold[i] in (None, []) for i in range(len(gold)))
    wrong = sum(1 for i in with_gold if gold[i] in (WRONG, [WRONG]))
    expected = PERFECT[metric] * (len(with_gold) - wrong) / len(with_gold)
    assert result["metrics"][metric] == pytest.approx(expected)


def test_report_without_placement_or_statistics_says_not_recorded(tmp_path, models):
    plan, _ = run_task(tmp_path, models, "text-classification", stats=False)
    report = build_report(plan.spec.output, read_manifest(plan.spec.output))
    assert report["placement"] is None and report["actors"] is None
    assert report["time"]["stages"] is None and report["tokens"] is None
    html = open(write_report(plan.spec.output)["report.html"]).read()
    assert "not recorded" in html


def test_incremental_run_reports_label_drift(tmp_path, models):
    plan, table = run_task(tmp_path, models, "text-classification")
    labels = [v for v in table.column("label").to_pylist() if v is not None]
    earlier = with_column(table.slice(0, 8), "label", ["LABEL_Z"] * 8)  # all one other label
    earlier = with_column(earlier, "row_id", [f"old:{i}" for i in range(8)])
    earlier = with_column(earlier, "error", pa.nulls(8, pa.string()).to_pylist())
    write_output(plan, table, earlier=earlier)
    report = build_report(plan.spec.output, read_manifest(plan.spec.output))
    drift = report["drift"]
    assert drift["rows_new"] == len(labels) and drift["rows_before"] == 8
    (labels_panel,) = [p for p in drift["panels"] if p["kind"] == "counts"]
    assert labels_panel["before"]["LABEL_Z"] == 1.0
    assert sum(labels_panel["after"].values()) == pytest.approx(1.0)
    assert labels_panel["tvd"] == pytest.approx(1.0)  # disjoint label sets
    assert "Change against earlier runs" in open(write_report(plan.spec.output)["report.html"]).read()


def test_cli_report_rebuilds_from_the_output_alone(tmp_path, models, capsys):
    plan, _ = run_task(tmp_path, models, "zero-shot-classification")
    assert cli.main(["report", plan.spec.output]) == cli.EXIT_OK
    assert "report.html" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / ".corpusmill" / "report" / "report.json").read_text())
    assert report["metrics"]["rows"]["scored"] > 0
    assert cli.main(["report", str(tmp_path / "nowhere")]) == cli.EXIT_INVALID
    # .corpusmill/report/ is corpusmill's own: a rerun resumes the folder, overwrite removes it
    from corpusmill.jobs.stores.output import check_output, replace_output

    assert check_output(plan.spec.output, "resume", plan.spec.job_id).resumed  # not refused
    assert check_output(plan.spec.output, "overwrite", plan.spec.job_id).replace
    replace_output(plan.spec.output)
    assert not (tmp_path / "out" / ".corpusmill" / "report").exists()


def test_cli_evaluate_scores_the_output_and_a_sample(tmp_path, models, capsys):
    plan, _ = run_task(tmp_path, models, "text-classification")
    job = tmp_path / "job.yaml"
    spec = plan.spec.model_dump(mode="json", exclude_defaults=True)
    job.write_text(json.dumps(spec))
    assert cli.main(["evaluate", str(job)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "accuracy" in out and "metrics.json" in out
    # the sample is drawn from the corpus: rows whose gold there is not null
    write_parquet(tmp_path / "in" / "corpus.parquet",
                  {"text": TEXTS + [None], "q": ["?"] * (ROWS + 1),
                   "gold": ["LABEL_A"] * (ROWS - 4) + [None] * 5})
    assert cli.main(["evaluate", str(job), "--sample", "5", "--seed", "1"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "5 row(s) scored" in out and "sample: 5 rows" in out
    assert f"estimate for all {ROWS + 1} rows" in out
    # a job without an evaluate block says how to add one
    del spec["evaluate"]
    job.write_text(json.dumps(spec))
    assert cli.main(["evaluate", str(job)]) == cli.EXIT_INVALID
    assert "evaluate.gold=" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"evaluate": {"gold": "topic"}}, "evaluate.gold 'topic' is not a column of the input"),
    ({"evaluate": {"gold": "gold"}, "keep_columns": ["q"]}, "must be kept in the output"),
    ({"evaluate": {"gold": "q"}, "task": "token-classification", "keep_columns": ["q"]},
     "add 'text' to keep_columns"),
    ({"evaluate": {"gold": "n"}}, "evaluate.gold 'n': text-classification scores a gold column "
                                  "of a string"),
])
def test_preflight_refuses_a_gold_column_it_could_not_score(tmp_path, models, change, message):
    from corpusmill.jobs.preflight import preflight
    from corpusmill.spec import parse_spec

    path = write_parquet(tmp_path / "in.parquet", {"text": TEXTS, "q": TEXTS, "gold": TEXTS,
                                                   "n": list(range(ROWS))})
    task = change.pop("task", "text-classification")
    model = models.ner if task == "token-classification" else models.classifier
    spec = parse_spec({"task": task, "model": model, "input": str(path),
                       "output": str(tmp_path / "out"), **change})
    with pytest.raises(JobError, match=message):
        preflight(spec)


def test_squad_sample_example_is_scored_with_exact_match_and_f1(tmp_path, models):
    """The shipped QA evaluation example (hand-written SQuAD-format questions), run with a tiny
    model: every question scored against its list of gold answers."""
    from pathlib import Path

    import yaml

    from corpusmill.pipelines.metrics import squad_metrics

    examples = Path(__file__).parents[2] / "jobs" / "examples"
    spec = yaml.safe_load((examples / "qa_squad_sample.yaml").read_text())
    spec.update(model=models.qa, output=str(tmp_path / "out"))
    plan, table = run_in_process(spec, base_dir=examples)
    write_output(plan, table, stats=False)
    result = json.loads(open(write_report(plan.spec.output)["metrics.json"]).read())
    assert result["rows"] == {"rows": 34, "scored": 34, "gold_missing": 0, "errored": 0}
    answers = ["" if a is None else a for a in table.column("answer").to_pylist()]
    expected = squad_metrics(answers, table.column("gold_answers").to_pylist())
    assert result["metrics"] == pytest.approx(expected)
