"""The job spec refuses what it does not understand, naming the key and the accepted ones."""
import pytest
import yaml

from corpusmill.errors import JobError
from corpusmill.spec import load_spec, parse_spec

BASE = {"task": "text-classification", "model": "org/model", "input": "in", "output": "out"}


def error_of(**changes) -> str:
    with pytest.raises(JobError) as e:
        parse_spec({**BASE, **changes})
    return str(e.value)


def test_unknown_top_level_key_lists_accepted_keys():
    msg = error_of(modle="x")
    assert "unknown key 'modle'" in msg and "model" in msg and "on_error" in msg


def test_unknown_nested_key_lists_that_sections_keys():
    msg = error_of(batching={"max_token": 10})
    assert "'batching.max_token'" in msg and "max_tokens, max_length, window_rows" in msg


def test_unknown_option_is_refused_by_the_task():
    msg = error_of(options={"topk": 3})
    assert "unknown text-classification option 'options.topk'" in msg
    assert "top_k" in msg and "function_to_apply" in msg


def test_option_out_of_range():
    assert "options.top_k" in error_of(options={"top_k": 0})


def test_unknown_task_lists_tasks():
    msg = error_of(task="sentiment")
    assert "unknown task 'sentiment'" in msg and "text-classification" in msg


def test_missing_required_keys_are_named():
    with pytest.raises(JobError, match="missing required key 'model'"):
        parse_spec({"task": "text-classification", "input": "a", "output": "b"})


def test_zero_shot_needs_labels_and_a_template_slot():
    assert "candidate_labels" in error_of(task="zero-shot-classification")
    msg = error_of(task="zero-shot-classification",
                   options={"candidate_labels": ["a", "b"], "hypothesis_template": "no slot"})
    assert "must contain '{}'" in msg


def test_relative_paths_resolve_against_the_job_file(tmp_path):
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "job.yaml"
    job.write_text(yaml.safe_dump({**BASE, "input": "data/in.parquet", "output": "../out"}))
    spec = load_spec(job)
    assert spec.input == str(tmp_path / "jobs" / "data" / "in.parquet")
    assert spec.output == str(tmp_path / "out")
    assert spec.model == "org/model"  # a hub id, not a path


def test_paths_are_absolute_when_the_job_file_is_named_relative_to_the_working_dir(
        tmp_path, monkeypatch):
    # as in the README: `corpusmill run jobs/examples/x.yaml` from the repo root. Ray workers
    # and Ray Data's checkpoint config need absolute paths.
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "job.yaml").write_text(
        yaml.safe_dump({**BASE, "input": "data/in.parquet", "output": "../out"}))
    monkeypatch.chdir(tmp_path)
    spec = load_spec("jobs/job.yaml", ["output=../out2"])
    assert spec.input == str(tmp_path / "jobs" / "data" / "in.parquet")
    assert spec.output == str(tmp_path / "out2")


def test_set_overrides_parse_values_as_yaml(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(BASE))
    spec = load_spec(job, ["options.top_k=3", "batching.max_tokens=1024", "on_error=skip"])
    assert spec.task_options.top_k == 3
    assert spec.batching.max_tokens == 1024
    assert spec.on_error == "skip"


def test_bad_override_syntax(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(BASE))
    with pytest.raises(JobError, match="KEY=VALUE"):
        load_spec(job, ["options.top_k"])


def test_job_id_is_stable_and_depends_on_what_is_computed():
    a, b = parse_spec(BASE), parse_spec(dict(BASE))
    assert a.job_id == b.job_id
    assert parse_spec({**BASE, "options": {"top_k": 2}}).job_id != a.job_id
    assert parse_spec({**BASE, "resources": {"concurrency": 2}}).job_id == a.job_id
