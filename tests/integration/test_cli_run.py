"""Whole jobs through the CLI on a local Ray: every input row exactly once, kept columns intact,
null text kept with an error, provenance and manifest written."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, EXIT_PARTIAL, main
from tests.conftest import write_job, write_parquet
from tests.corpora import varied_texts


@pytest.fixture
def multi_file_corpus(tmp_path):
    texts = varied_texts(240, seed=7)
    folder = tmp_path / "corpus"
    rows = []
    for part in range(3):  # three files, several row groups each, one with nested folders
        chunk = texts[part * 80:(part + 1) * 80]
        ids = [f"doc-{part}-{i}" for i in range(len(chunk))]
        body = [None if i % 37 == 5 else t for i, t in enumerate(chunk)]
        stars = [i % 5 for i in range(len(chunk))]
        sub = folder / (f"year=2026/part-{part}.parquet" if part == 2 else f"part-{part}.parquet")
        write_parquet(sub, {"doc_id": ids, "body": body, "stars": stars}, row_group_size=25)
        year = "2026" if part == 2 else None  # the hive folder's value, a column of the output
        rows += [{"doc_id": d, "body": b, "stars": s, "year": year}
                 for d, b, s in zip(ids, body, stars)]
    return folder, rows


@pytest.mark.slow
def test_every_row_once_with_kept_columns(tmp_path, tiny, ray_session, multi_file_corpus, capsys):
    folder, rows = multi_file_corpus
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(folder), output=str(tmp_path / "out"), columns={"text": "body"},
                    id_column="doc_id", batching={"max_tokens": 1024, "window_rows": 32},
                    resources={"concurrency": 2})
    # rows with null text are recorded with an error: the run completed, partially (exit 3)
    assert main(["run", str(job), "--set", "options.top_k=2"]) == EXIT_PARTIAL
    out = pq.read_table(tmp_path / "out")
    got = {r["doc_id"]: r for r in out.to_pylist()}
    assert out.num_rows == len(rows) == len(got)  # every id exactly once
    for row in rows:
        written = got[row["doc_id"]]
        assert (written["body"], written["stars"], written["year"]) == (
            row["body"], row["stars"], row["year"])
        if row["body"] is None:
            assert written["error"] == "column 'body' is null"
            assert written["label"] is None and written["labels"] is None
        else:
            assert written["error"] is None
            assert len(written["labels"]) == 2 and written["label"] == written["labels"][0]["label"]
    assert out.column_names == ["doc_id", "body", "stars", "year", "label", "score", "labels",
                                "error"]

    nulls = sum(r["body"] is None for r in rows)
    printed = capsys.readouterr()
    summary = printed.out
    assert f"{len(rows)} rows in from 3 file(s), {len(rows)} out, {nulls} with errors" in summary
    assert "ran on 1 CPU node(s) with 2 actor(s) at peak" in summary
    # stderr carries our progress lines and notices only; what Ray printed is in the run's log
    lines = printed.err.strip().splitlines()
    progress = [line for line in lines if line.startswith("corpusmill text-classification: ")]
    notices = [line for line in lines if line.startswith("corpusmill: ")]
    assert progress and len(progress) + len(notices) == len(lines), printed.err
    assert f"{len(rows)}/{len(rows)} rows (100%)" in progress[-1]
    logs = list((tmp_path / "out" / ".corpusmill" / "logs").glob("*.log"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0
    meta = json.loads(pq.read_schema(next((tmp_path / "out").glob("*.parquet")))
                      .metadata[b"corpusmill"])
    assert meta["task"] == "text-classification" and meta["options"]["top_k"] == 2
    assert meta["model"] == tiny.classifier and meta["corpusmill_version"]
    manifest = json.loads((tmp_path / "out" / ".corpusmill" / "manifest.json").read_text())
    assert manifest["summary"]["rows_errored"] == nulls and manifest["provenance"]["job_id"]
    # where it ran and what each stage did, for the report
    placement, stats = manifest["placement"], manifest["stats"]
    assert placement["device"] == "cpu" and placement["actors"]["max"] == 2
    assert sum(node["rows"] for node in placement["nodes"]) == len(rows)  # errors included
    assert stats["stages"]["read"]["rows"] == stats["stages"]["tokenize"]["rows"] == len(rows)
    assert stats["stages"]["postprocess"]["errors"] == nulls
    assert 0 < stats["tokens"]["tokens"] <= stats["tokens"]["padded_tokens"]
    # how long after the command the first rows went to the writer, in the summary too
    assert 0 < stats["seconds_to_first_output"] <= manifest["summary"]["seconds"]
    assert "first rows written at" in summary
    assert sorted(stats["files_written"]) == sorted(
        p.name for p in (tmp_path / "out").rglob("*.parquet") if ".corpusmill" not in p.parts)


@pytest.mark.slow
def test_generated_ids_and_skip_policy(tmp_path, tiny, ray_session, multi_file_corpus):
    folder, rows = multi_file_corpus
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.distilbert,
                    input=str(folder), output=str(tmp_path / "out"), columns={"text": "body"},
                    keep_columns=["doc_id"], on_error="skip")
    assert main(["run", str(job)]) == EXIT_PARTIAL  # rows were left out
    out = pq.read_table(tmp_path / "out").to_pylist()
    assert out and all(r["error"] is None for r in out)
    assert len(out) == len(rows) - sum(r["body"] is None for r in rows)
    ids = [r["row_id"] for r in out]
    assert len(set(ids)) == len(ids)
    # generated ids are '<file relative to the input>:<row in that file>'
    expected = {f"part-0.parquet:{i}" for i in range(80)} | {
        f"part-1.parquet:{i}" for i in range(80)} | {f"year=2026/part-2.parquet:{i}" for i in range(80)}
    by_doc = {r["doc_id"]: r["row_id"] for r in out}
    assert set(ids) <= expected
    assert by_doc["doc-2-3"] == "year=2026/part-2.parquet:3"


def test_overwrite_replaces_earlier_output(tmp_path, tiny, ray_session, multi_file_corpus):
    folder, rows = multi_file_corpus
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(folder), output=str(tmp_path / "out"), columns={"text": "body"})
    # the corpus has rows with null text: both runs complete partially (exit 3)
    assert main(["run", str(job)]) == EXIT_PARTIAL
    assert main(["run", str(job), "--set", "output_mode=overwrite"]) == EXIT_PARTIAL
    assert pq.read_table(tmp_path / "out").num_rows == len(rows)


def test_zero_row_corpus_gives_valid_empty_output(tmp_path, tiny, ray_session):
    path = write_parquet(tmp_path / "in" / "empty.parquet", {"text": pa_empty_strings()})
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(path), output=str(tmp_path / "out"))
    assert main(["run", str(job)]) == EXIT_OK
    out = pq.read_table(tmp_path / "out")
    assert out.num_rows == 0
    assert out.column_names == ["row_id", "text", "label", "score", "labels", "error"]


def pa_empty_strings():
    import pyarrow as pa
    return pa.array([], pa.string())


def test_actors_that_would_hold_every_cpu_are_refused(tmp_path, tiny, ray_session, capsys):
    """Inference actors reserving all CPUs leave none for read/tokenize tasks: the job would
    wait forever, so it is refused before any output is written, naming the fix."""
    write_parquet(tmp_path / "corpus.parquet", {"body": ["fine text"] * 4})
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(tmp_path / "corpus.parquet"), output=str(tmp_path / "out"),
                    columns={"text": "body"}, resources={"concurrency": 4, "cpus_per_actor": 1})
    assert main(["run", str(job)]) != EXIT_OK
    err = capsys.readouterr().err
    assert "would reserve 4 of the 2 CPUs this cluster offers" in err and "resources.concurrency" in err
    assert not (tmp_path / "out").exists()
