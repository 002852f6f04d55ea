"""A job with several tasks (`tasks:`) is checked whole before any Ray work: a fault in one
task's block, model or columns is refused naming the task, output names that would collide
are refused naming both owners, and `validate` says which tasks share a tokenization."""
from __future__ import annotations

import pytest
import yaml

import corpusmill.jobs.run
from corpusmill.errors import JobError
from corpusmill.jobs.cli import EXIT_INVALID, EXIT_OK, main
from corpusmill.spec import parse_spec
from tests import tiny_models
from tests.conftest import write_parquet


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("Ray was started for an invalid job")
    monkeypatch.setattr(corpusmill.jobs.run, "ensure_ray", tripwire)


@pytest.fixture(scope="module")
def shared_vocab(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared-vocab")
    return (tiny_models.build_bert_classifier(root / "clf", fixed_vocab=True),
            tiny_models.build_bert_encoder(root / "enc", fixed_vocab=True))


@pytest.fixture
def corpus(tmp_path):
    return write_parquet(tmp_path / "in" / "part-0.parquet",
                         {"body": ["good", "bad"], "sentiment_label": ["x", "y"]})


def run_cli(tmp_path, capsys, command="run", **spec) -> tuple[int, str, str]:
    job = tmp_path / "job.yaml"  # the tasks in the order given, as a user writes them
    job.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), **spec}, sort_keys=False))
    code = main([command, str(job)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_fault_in_one_task_is_refused_naming_the_task(tmp_path, capsys, tiny, corpus):
    good = {"task": "text-classification", "model": tiny.classifier}
    faults = {
        "options": ({**good, "options": {"top_kk": 2}},
                    "task 'bad': unknown text-classification option 'options.top_kk'"),
        "model": ({**good, "model": str(tmp_path / "missing-model")},
                  "task 'bad': model"),
        "columns": ({**good, "columns": {"text": "title"}},
                    "task 'bad': column 'title' (task input 'text') is not in"),
        "resources": ({**good, "resources": {"dtype": "float64"}},
                      "task 'bad': "),
    }
    for what, (block, message) in faults.items():
        code, _, err = run_cli(tmp_path, capsys, input=str(corpus), keep_columns=["body"],
                               columns={"text": "body"}, tasks={"good": good, "bad": block})
        assert code == EXIT_INVALID, what
        assert message in err, (what, err)
    assert not (tmp_path / "out").exists()


def test_faults_are_refused_in_task_order_while_the_models_load_ahead(tmp_path, capsys, tiny,
                                                                     corpus):
    """The tasks' models load in a background thread while the corpus is read; the first
    task's fault is still the one refused, whether it is its columns or its model."""
    good = {"task": "text-classification", "model": tiny.classifier}
    cases = [
        ({"first": {**good, "columns": {"text": "title"}},
          "second": {**good, "model": str(tmp_path / "missing-model")}},
         "task 'first': column 'title'"),
        ({"first": {**good, "model": str(tmp_path / "missing-model")},
          "second": {**good, "columns": {"text": "title"}}},
         "task 'first': model"),
        ({"first": good, "second": {**good, "model": str(tmp_path / "missing-model")}},
         "task 'second': model"),
    ]
    for tasks, message in cases:
        code, _, err = run_cli(tmp_path, capsys, command="validate", input=str(corpus),
                               keep_columns=["body"], columns={"text": "body"}, tasks=tasks)
        assert code == EXIT_INVALID and message in err, err


def test_output_columns_that_would_collide_are_refused(tmp_path, capsys, tiny, corpus):
    block = {"task": "text-classification", "model": tiny.classifier}
    code, _, err = run_cli(tmp_path, capsys, input=str(corpus), columns={"text": "body"},
                           tasks={"sentiment": block})
    assert code == EXIT_INVALID
    assert "output column 'sentiment_label' of task 'sentiment' would collide with the " \
           "corpus (kept column)" in err
    with pytest.raises(JobError, match="not a usable task name"):
        parse_spec({"input": "x", "output": "y", "tasks": {"Sentiment": block}})
    with pytest.raises(JobError, match="'task' belong"):
        parse_spec({"input": "x", "output": "y", "task": "text-classification",
                    "tasks": {"a": block}})


def test_executor_process_in_a_job_with_several_tasks_is_refused_when_the_spec_loads(
        tmp_path, capsys, tiny, corpus):
    block = {"task": "text-classification", "model": tiny.classifier}
    for where in ({"resources": {"executor": "process"}},  # the job's, inherited by each task
                  {"tasks": {"a": block, "b": {**block, "resources": {"executor": "process"}}}}):
        spec = {"input": str(corpus), "columns": {"text": "body"},
                "tasks": {"a": block, "b": block}, **where}
        code, _, err = run_cli(tmp_path, capsys, command="validate", **spec)
        assert code == EXIT_INVALID
        assert "executor: process runs one task" in err and "Use executor: ray or auto" in err
        assert "'b'" in err and "Traceback" not in err


def test_validate_says_which_tasks_share_a_tokenization(tmp_path, capsys, tiny, corpus,
                                                        shared_vocab):
    classifier, encoder = shared_vocab
    code, out, err = run_cli(tmp_path, capsys, command="validate", input=str(corpus),
                             columns={"text": "body"}, keep_columns=["body"],
                             tasks={"sentiment": {"task": "text-classification",
                                                  "model": classifier},
                                    "vec": {"task": "feature-extraction", "model": encoder},
                                    "other": {"task": "feature-extraction",
                                              "model": tiny.encoder}})
    assert code == EXIT_OK, err
    assert "ok: 3 tasks: sentiment (text-classification with" in out
    assert "tokenization: shared by sentiment, vec" in out
    assert "output columns: row_id (string), body (string), sentiment_label (string), " \
           "sentiment_score (float), " in out
    assert "other_embedding (fixed_size_list<item: float>[32]), other_error (string), " \
           "error (string)" in out


def test_the_job_id_follows_the_task_list():
    block = {"task": "text-classification", "model": "m"}
    one = parse_spec({"input": "x", "output": "y", "tasks": {"a": block}})
    same = parse_spec({"input": "x", "output": "y", "tasks": {"a": block},
                       "resources": {"concurrency": 1}})
    more = parse_spec({"input": "x", "output": "y",
                       "tasks": {"a": block, "b": {**block, "model": "n"}}})
    assert one.job_id == same.job_id != more.job_id
    assert more.task_specs()["b"].model.endswith("n") and more.task_specs()["b"].output == \
        one.task_specs()["a"].output
