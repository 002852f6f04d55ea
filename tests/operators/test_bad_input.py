"""Bad input is refused before any Ray work, with a message that names the fault and the fix.
Each case runs the real CLI; a tripwire on Ray start-up proves no Ray work began."""
from __future__ import annotations

import shutil

import pytest

import corpusmill.jobs.run
from corpusmill.jobs.cli import EXIT_INVALID, main
from tests.conftest import write_job, write_parquet


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("Ray was started for an invalid job")
    monkeypatch.setattr(corpusmill.jobs.run, "ensure_ray", tripwire)


@pytest.fixture
def corpus(tmp_path):
    return write_parquet(tmp_path / "in" / "part-0.parquet",
                         {"body": ["good", "bad"], "stars": [5, 1], "title": ["a", "b"]})


def fails(tmp_path, capsys, command="run", **spec) -> str:
    job = write_job(tmp_path / "job.yaml", **{
        "task": "text-classification", "output": str(tmp_path / "out"), **spec})
    assert main([command, str(job)]) == EXIT_INVALID
    return capsys.readouterr().err


def test_missing_input_path(tmp_path, capsys, tiny):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "nope"))
    assert "does not exist" in err and "nope" in err


def test_folder_without_parquet_files(tmp_path, capsys, tiny):
    (tmp_path / "csvs").mkdir()
    (tmp_path / "csvs" / "data.csv").write_text("text\nhello\n")
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "csvs"))
    assert "no Parquet files" in err


def test_glob_matching_nothing(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in" / "*.pq"))
    assert "no Parquet files" in err and "glob" in err


def test_missing_column_lists_present_columns(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus))
    assert "column 'text'" in err and "part-0.parquet" in err
    assert "body (string)" in err and "stars (int64)" in err
    assert "columns: {text: <column>}" in err


def test_non_string_column(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "stars"})
    assert "'stars'" in err and "int64" in err and "not text" in err


def test_column_missing_in_one_file_of_many(tmp_path, capsys, tiny, corpus):
    write_parquet(tmp_path / "in" / "part-1.parquet", {"other": ["x"]})
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in"),
                columns={"text": "body"})
    assert "part-1.parquet" in err and "other (string)" in err


def test_corrupt_parquet_file_is_named(tmp_path, capsys, tiny, corpus):
    (tmp_path / "in" / "broken.parquet").write_bytes(b"not parquet at all")
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in"),
                columns={"text": "body"})
    assert "broken.parquet" in err


def test_model_folder_missing(tmp_path, capsys, corpus):
    err = fails(tmp_path, capsys, model=str(tmp_path / "no-model"), input=str(corpus),
                columns={"text": "body"})
    assert "model folder" in err and "does not exist" in err


def test_folder_that_is_not_a_model(tmp_path, capsys, corpus):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    err = fails(tmp_path, capsys, model=str(tmp_path / "notes"), input=str(corpus),
                columns={"text": "body"})
    assert "no config.json" in err and "readme.txt" in err and "save_pretrained" in err


def test_a_corpus_fault_is_reported_before_a_model_fault(tmp_path, capsys, tiny, corpus):
    """The model loads in a thread while the corpus is read; its faults still come after
    the corpus's: a job with both is refused for its corpus, as before."""
    for command in ("run", "validate"):
        err = fails(tmp_path, capsys, command=command, model=str(tmp_path / "no-model"),
                    input=str(corpus))
        assert "column 'text'" in err and "no-model" not in err, (command, err)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    err = fails(tmp_path, capsys, command="validate", model=str(tmp_path / "notes"),
                input=str(corpus), columns={"text": "body"}, id_column="missing")
    assert "id_column 'missing' is not in" in err and "config.json" not in err


def test_a_model_loading_in_the_background_stops_when_the_corpus_is_refused(
        tmp_path, tiny, corpus, monkeypatch):
    """A corpus fault is reported without waiting for the model, and the model's loading
    stops at its next step (here: after the config, before the tokenizer)."""
    import threading

    import corpusmill.jobs.preflight as preflight_module
    from corpusmill.errors import JobError
    from corpusmill.jobs.preflight import preflight
    from corpusmill.spec import parse_spec

    release, steps = threading.Event(), []
    load_config = preflight_module._load_config

    def slow_config(spec, folder):  # held until the refusal has come back
        steps.append("config released" if release.wait(30) else "config timed out")
        return load_config(spec, folder)

    def tokenizer(spec, folder):
        steps.append("tokenizer")
        raise AssertionError("the tokenizer was loaded for a refused job")

    monkeypatch.setattr(preflight_module, "_load_config", slow_config)
    monkeypatch.setattr(preflight_module, "_load_tokenizer", tokenizer)
    spec = parse_spec({"task": "text-classification", "model": tiny.classifier,
                       "input": str(corpus), "output": str(tmp_path / "out")})
    with pytest.raises(JobError, match="column 'text'"):
        preflight(spec, load_weights=True)  # returns while the config is still loading
    loading = [t for t in threading.enumerate() if t.name == "corpusmill-model"]
    release.set()
    for thread in loading:
        thread.join(60)
        assert not thread.is_alive()
    assert "config timed out" not in steps and "tokenizer" not in steps


def test_model_without_weights(tmp_path, capsys, tiny, corpus):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny.classifier, folder)
    (folder / "model.safetensors").unlink()
    err = fails(tmp_path, capsys, model=str(folder), input=str(corpus), columns={"text": "body"})
    assert "no weights" in err


def test_pickle_weights_refused_unless_allowed(tmp_path, capsys, tiny, corpus):
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "pickled"
    shutil.copytree(tiny.classifier, folder)
    (folder / "model.safetensors").unlink()
    model = AutoModelForSequenceClassification.from_pretrained(tiny.classifier)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    err = fails(tmp_path, capsys, model=str(folder), input=str(corpus), columns={"text": "body"})
    assert "pickle" in err and "allow_pickle: true" in err


def test_model_whose_head_does_not_fit(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.encoder, input=str(corpus), columns={"text": "body"})
    assert "ForSequenceClassification" in err and "BertModel" in err
    assert "zero-shot-classification" in err


def test_top_k_above_the_number_of_labels(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "body"}, options={"top_k": 5})
    assert "top_k=5" in err and "3 labels" in err


def test_unknown_option(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "body"}, options={"top": 2})
    assert "unknown text-classification option 'options.top'" in err and "top_k" in err


def test_unknown_spec_key(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "body"}, on_errors="skip")
    assert "unknown key 'on_errors'" in err and "on_error" in err


def test_output_inside_input(tmp_path, capsys, tiny, corpus):
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(tmp_path / "in"), output=str(tmp_path / "in" / "out"),
                    columns={"text": "body"})
    assert main(["run", str(job)]) == EXIT_INVALID
    assert "inside the input" in capsys.readouterr().err


def test_output_folder_of_unknown_origin_is_refused(tmp_path, capsys, tiny, corpus):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_bytes(b"x")
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "body"})
    assert "not a corpusmill job's output (old.parquet)" in err
    assert (tmp_path / "out" / "old.parquet").exists()


def test_output_mode_error_refuses_any_existing_output(tmp_path, capsys, tiny, corpus):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_bytes(b"x")
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "body"}, output_mode="error")
    assert "already holds 1 file(s)" in err and "output_mode: overwrite" in err


def test_output_of_another_job_is_refused(tmp_path, capsys, tiny, corpus):
    import json

    (tmp_path / "out" / ".corpusmill").mkdir(parents=True)
    (tmp_path / "out" / ".corpusmill" / "manifest.json").write_text(json.dumps(
        {"job_id": "0123456789abcdef", "provenance": {"task": "text-classification",
                                                      "model": "other-model"}}))
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(corpus),
                columns={"text": "body"})
    assert "output of another job (job 0123456789abcdef: text-classification with other-model)" in err
    assert "output_mode: overwrite" in err


def test_validate_reports_the_same_errors(tmp_path, capsys, tiny, corpus):
    err = fails(tmp_path, capsys, command="validate", model=tiny.classifier, input=str(corpus))
    assert "column 'text'" in err


def test_validate_accepts_a_good_job(tmp_path, capsys, tiny, corpus):
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(corpus), output=str(tmp_path / "out"), columns={"text": "body"})
    assert main(["validate", str(job)]) == 0
    out = capsys.readouterr().out
    assert "ok: text-classification" in out and "2 rows in 1 file(s)" in out
    assert "label (string)" in out and "error (string)" in out


def test_validate_imports_no_ray(tmp_path, tiny, corpus):
    """`corpusmill validate`, the command as its own process, checks a job without importing
    Ray or Ray Data (a run's, not a check's): the corpus module and the CLI import neither."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[2]  # this checkout's code, not an installed one
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(corpus), output=str(tmp_path / "out"), columns={"text": "body"})
    code = ("import sys; sys.argv = ['corpusmill', 'validate', sys.argv[1]]; "
            "from corpusmill.jobs.cli import main; code = main(); "
            "import corpusmill.jobs.preflight as p; print('from', p.__file__); "
            "print('ray:', sorted(m for m in sys.modules if m.split('.')[0] == 'ray')); "
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(job)], cwd=checkout,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(checkout)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok: text-classification" in done.stdout
    assert f"from {checkout}" in done.stdout
    assert "ray: []" in done.stdout


def test_duplicate_ids_are_refused_showing_the_first_ones(tmp_path, capsys, tiny):
    write_parquet(tmp_path / "in" / "a.parquet", {"id": ["x1", "x2", "x3"], "text": ["a"] * 3})
    write_parquet(tmp_path / "in" / "b.parquet", {"id": ["x3", "x4", "x1"], "text": ["b"] * 3})
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in"),
                id_column="id")
    assert "2 duplicated id(s)" in err
    assert "'x1' x2 (in a.parquet, b.parquet)" in err and "'x3' x2" in err


def test_null_ids_are_refused(tmp_path, capsys, tiny):
    write_parquet(tmp_path / "in" / "a.parquet", {"id": ["x1", None], "text": ["a", "b"]})
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in"),
                id_column="id")
    assert "is null in 'a.parquet' (first at row 1)" in err


def test_files_whose_column_types_conflict(tmp_path, capsys, tiny):
    write_parquet(tmp_path / "in" / "a.parquet", {"text": ["a"], "stars": [5]})
    write_parquet(tmp_path / "in" / "b.parquet", {"text": ["b"], "stars": ["five"]})
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in"))
    assert "'stars' is int64 in 'a.parquet' but string in 'b.parquet'" in err
    assert "keep_columns" in err


def test_model_folder_with_missing_tokenizer_files(tmp_path, capsys, tiny, corpus):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny.classifier, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    err = fails(tmp_path, capsys, model=str(folder), input=str(corpus), columns={"text": "body"})
    assert "tokenizer could not be loaded" in err and "tokenizer.save_pretrained" in err


def test_model_needing_remote_code_is_refused_unless_trusted(tmp_path, capsys, tiny, corpus):
    import json

    folder = tmp_path / "custom-code"
    shutil.copytree(tiny.classifier, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_custom.CustomConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    err = fails(tmp_path, capsys, model=str(folder), input=str(corpus), columns={"text": "body"})
    assert "trust_remote_code: true" in err and "auto_map" in err


def test_unreadable_file_named_with_the_skip_option(tmp_path, capsys, tiny, corpus):
    (tmp_path / "in" / "zz-broken.parquet").write_bytes(b"PAR1 garbage")
    err = fails(tmp_path, capsys, model=tiny.classifier, input=str(tmp_path / "in"),
                columns={"text": "body"})
    assert "zz-broken.parquet" in err and "skip_corrupt_files: true" in err


def test_binary_input_column_is_accepted(tmp_path, capsys, tiny):
    path = write_parquet(tmp_path / "in" / "a.parquet", {"text": [b"caf\xc3\xa9", b"\xff\xfe"]})
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(path), output=str(tmp_path / "out"))
    assert main(["validate", str(job)]) == 0
