"""A job run in the command's own process (`resources.executor: process`, what `auto` picks on a
small machine with no cluster): the same output as the Ray pipeline, row for row; exactly once
across a stop and a rerun (which resumes on Ray); partitioned output; the manifest and summary
say where it ran."""
from __future__ import annotations

import json

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs import in_process
from corpusmill.jobs.run import run_job
from corpusmill.jobs.stores.output import CHECKPOINT_DIR, committed_rows
from corpusmill.spec import parse_spec
from tests.conftest import write_parquet
from tests.corpora import assert_same_rows, varied_texts


@pytest.fixture
def corpus(tmp_path):
    """Two files of 150 rows, row groups of 40, one text null (an error row)."""
    texts = varied_texts(300, seed=11)
    texts[17] = None
    folder = tmp_path / "corpus"
    for part in range(2):
        chunk = texts[part * 150:(part + 1) * 150]
        write_parquet(folder / f"part-{part}.parquet",
                      {"doc_id": [f"d{part}-{i:03d}" for i in range(len(chunk))], "body": chunk,
                       "lang": ["en" if i % 3 else "fr" for i in range(len(chunk))]},
                      row_group_size=40)
    return folder


def job(tmp_path, corpus, model, out: str, executor: str, **extra) -> dict:
    return {"task": "text-classification", "model": model, "input": str(corpus),
            "output": str(tmp_path / out), "id_column": "doc_id", "columns": {"text": "body"},
            "keep_columns": ["lang"], "batching": {"window_rows": 32, "max_tokens": 1024},
            "resources": {"executor": executor, "concurrency": 1}, **extra}


def rows_by_id(output) -> list[dict]:
    return sorted(pq.read_table(output).to_pylist(), key=lambda r: r["doc_id"])


def manifest(output) -> dict:
    return json.loads((output / ".corpusmill" / "manifest.json").read_text())


def test_a_job_in_this_process_writes_what_the_ray_pipeline_writes(tmp_path, tiny, corpus,
                                                                    ray_session):
    here = run_job(parse_spec(job(tmp_path, corpus, tiny.classifier, "here", "process")))
    on_ray = run_job(parse_spec(job(tmp_path, corpus, tiny.classifier, "ray", "ray")))

    assert (here.rows_in, here.rows_out, here.rows_errored) == (300, 300, 1)
    assert (on_ray.rows_out, on_ray.rows_errored) == (300, 1)
    ours, theirs = rows_by_id(tmp_path / "here"), rows_by_id(tmp_path / "ray")
    assert [r["doc_id"] for r in ours] == sorted(f"d{p}-{i:03d}" for p in range(2)
                                                 for i in range(150))
    assert_same_rows(ours, theirs)
    assert ours[17]["error"] and ours[17]["label"] is None  # the null text, named as on Ray
    # the same schema, provenance included, and committed ids Ray Data's filter reads
    assert pq.read_schema(next((tmp_path / "here").glob("*.parquet"))) == pq.read_schema(
        next((tmp_path / "ray").glob("*.parquet")))
    assert committed_rows(str(tmp_path / "here")) == 300
    record = manifest(tmp_path / "here")
    assert record["status"] == "complete"
    assert record["placement"]["executor"] == "process"
    assert record["placement"]["executor_reason"] == "executor: process"
    assert record["placement"]["decided"].startswith("in this process: ")
    assert record["stats"]["stages"]["inference"]["rows"] == 300
    assert record["stats"]["stages"]["tokenize"]["rows"] == 300
    assert record["stats"]["seconds_to_first_output"] is not None
    assert here.placement["nodes"][0]["rows"] == 300
    # the summary and the report say where it ran and why
    assert "ran in this process" in "\n".join(here.lines())
    assert "no Ray (executor: process)" in "\n".join(here.lines())
    html = (tmp_path / "here" / ".corpusmill" / "report" / "report.html").read_text()
    assert "this process" in html and "executor: process" in html
    assert "executor: ray" in (tmp_path / "ray" / ".corpusmill" / "report" /
                               "report.html").read_text()


def test_a_stopped_run_resumes_on_ray_with_every_id_once(tmp_path, tiny, corpus, ray_session,
                                                         monkeypatch):
    spec = parse_spec(job(tmp_path, corpus, tiny.classifier, "out", "process"))
    write = in_process.BlockSink.write
    written = []

    def stop_in_the_third_block(self, table):
        if len(written) == 2:  # the data file is written, the checkpoint still pending
            pending = self.write_pending(table.column(self.id_column),
                                         f"{self.run_id}_{self.blocks:09d}")
            self._write_data(table, f"{self.run_id}_{self.blocks:09d}")
            assert pending is not None
            written.append(-table.num_rows)  # written, not committed
            raise KeyboardInterrupt("stopped between the data file and its commit")
        write(self, table)
        written.append(table.num_rows)

    monkeypatch.setattr(in_process.BlockSink, "write", stop_in_the_third_block)
    with pytest.raises(KeyboardInterrupt):
        run_job(spec)
    out = tmp_path / "out"
    committed, uncommitted = sum(written[:2]), -written[2]
    assert committed_rows(str(out)) == committed == 40  # a row group of 40: blocks of 32 and 8
    assert list((out / CHECKPOINT_DIR).glob("*.pending.parquet"))
    assert len(pq.read_table(out)) == committed + uncommitted  # the uncommitted file is there

    monkeypatch.setattr(in_process.BlockSink, "write", write)
    summary = run_job(spec)  # committed rows to skip: on Ray, its checkpoint filter
    assert summary.rows_before == committed
    assert manifest(out)["placement"]["executor"] == "ray"
    assert manifest(out)["placement"]["executor_reason"].startswith(
        f"an earlier run committed {committed} rows")
    ids = [r["doc_id"] for r in rows_by_id(out)]
    assert len(ids) == len(set(ids)) == 300
    fresh = run_job(parse_spec(job(tmp_path, corpus, tiny.classifier, "fresh", "process")))
    assert fresh.rows_out == 300
    assert_same_rows(rows_by_id(out), rows_by_id(tmp_path / "fresh"))


def test_a_pending_block_of_a_stopped_run_is_cleaned_before_the_next(tmp_path):
    out = tmp_path / "out"
    sink = in_process.BlockSink(str(out), "doc_id", [], "run1")
    import pyarrow as pa

    sink.write(pa.table({"doc_id": ["a", "b"], "x": [1, 2]}))
    pending = sink.write_pending(pa.array(["c"]), "run1_000000001")
    sink._write_data(pa.table({"doc_id": ["c"], "x": [3]}), "run1_000000001")
    assert pending is not None and len(pq.read_table(out)) == 3

    assert in_process.BlockSink(str(out), "doc_id", [], "run2").clean_pending() == 1
    assert sorted(pq.read_table(out).column("doc_id").to_pylist()) == ["a", "b"]
    assert not list((out / CHECKPOINT_DIR).glob("*.pending.parquet"))
    assert committed_rows(str(out)) == 2


def test_partitioned_output_in_this_process_reads_back_as_on_ray(tmp_path, tiny, corpus,
                                                                  ray_session):
    for name, executor in (("ray", "ray"), ("here", "process")):
        summary = run_job(parse_spec(job(tmp_path, corpus, tiny.classifier, name, executor,
                                         partition_by=["lang"])))
        # the summary's preview shows the partition column, which the files do not hold
        assert summary.preview and {row["lang"] for row in summary.preview} <= {"en", "fr"}
        assert None not in {row["lang"] for row in summary.preview}
    assert sorted(p.name for p in (tmp_path / "here").glob("lang=*")) == ["lang=en", "lang=fr"]
    tables = {name: pads.dataset(tmp_path / name, format="parquet", partitioning="hive")
              .to_table() for name in ("here", "ray")}
    assert tables["here"].schema.names == tables["ray"].schema.names
    assert_same_rows(sorted(tables["here"].to_pylist(), key=lambda r: r["doc_id"]),
                     sorted(tables["ray"].to_pylist(), key=lambda r: r["doc_id"]))


@pytest.mark.parametrize("settings, env, cores, connected, expected", [
    ({}, {}, 2, False, ("process", "executor auto: 2 cores, no cluster, no GPU")),
    ({}, {}, 16, False, ("process", "executor auto: 300 rows, no cluster")),
    ({}, {}, 16, False, None),  # 30,000 rows on 16 cores: an actor pool (rows below)
    ({}, {"RAY_ADDRESS": "10.0.0.1:6379"}, 2, False, ("ray", "a cluster is named")),
    ({}, {}, 2, True, ("ray", "this process is connected to Ray already")),
    ({"num_gpus": 1}, {}, 2, False, ("ray", "GPUs are asked for")),
    ({"executor": "ray"}, {}, 2, False, ("ray", "executor: ray")),
    ({"executor": "process"}, {}, 16, True, ("process", "executor: process")),
])
def test_auto_runs_small_jobs_on_this_machine_in_this_process(tmp_path, monkeypatch, settings,
                                                               env, cores, connected, expected):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(in_process.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(in_process, "_ray_connected", lambda: connected)
    monkeypatch.setattr(in_process, "_gpu_here", lambda: False)
    spec = parse_spec({"task": "text-classification", "model": "m", "input": "in",
                       "output": "out", "resources": settings})
    rows = 300 if expected is not None else 30_000
    chosen = in_process.choose_executor(spec, None, rows=rows, rows_before=0)
    if expected is None:
        assert (chosen.kind, chosen.reason) == ("ray", "30,000 rows on 16 cores: an actor pool")
    else:
        assert chosen.kind == expected[0] and chosen.reason.startswith(expected[1])
    resumed = in_process.choose_executor(spec, None, rows=rows, rows_before=10)
    assert resumed.kind == "ray" or settings.get("executor") == "ray"


def test_process_with_a_cluster_named_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    spec = parse_spec({"task": "text-classification", "model": "m", "input": "in",
                       "output": "out", "resources": {"executor": "process"}})
    with pytest.raises(JobError, match="a Ray cluster is named .10.0.0.1:6379.*executor: ray"):
        in_process.choose_executor(spec, None, rows=10, rows_before=0)


def test_validate_says_where_a_run_would_go_and_refuses_process_with_a_cluster_named(
        tmp_path, tiny, corpus, capsys, monkeypatch):
    from corpusmill.jobs.cli import EXIT_INVALID, EXIT_OK, main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(in_process.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(in_process, "_gpu_here", lambda: False)
    monkeypatch.setattr(in_process, "_ray_connected", lambda: False)  # the suite's own Ray
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(job(tmp_path, corpus, tiny.classifier, "out", "auto")))
    assert main(["validate", str(spec)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "runs in this process, no Ray (executor auto: 2 cores" in out

    assert main(["validate", str(spec), "--set", "resources.executor=ray"]) == EXIT_OK
    assert "runs on Ray (executor: ray)" in capsys.readouterr().out

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    code = main(["validate", str(spec), "--set", "resources.executor=process"])
    err = capsys.readouterr().err
    assert code == EXIT_INVALID
    assert "a Ray cluster is named (10.0.0.1:6379)" in err and "executor: ray" in err


def test_blocks_tokenized_ahead_come_in_order_and_an_error_stops_at_its_block():
    def encode(block):
        if block == 3:
            raise JobError("block 3 is damaged")
        return block * 10

    got = []
    with pytest.raises(JobError, match="block 3 is damaged"):
        with in_process.TokenizedAhead(iter(range(6)), encode) as encoded:
            for item in encoded:
                got.append(item)
    assert got == [0, 10, 20]  # every block before the error, none after


def test_leaving_early_stops_the_tokenizing_thread():
    import itertools

    encoded_blocks = []
    ahead = in_process.TokenizedAhead(itertools.count(), lambda b: encoded_blocks.append(b) or b)
    with ahead as encoded:
        assert next(encoded) == 0
    assert not ahead.thread.is_alive()
    assert len(encoded_blocks) <= 4  # one taken, at most `ahead` queued and one in hand


@pytest.mark.parametrize("blocks, engine, threads", [
    # (tokenize s, model s) per block; the first block's warm-up is not counted
    ([(0.3, 5.0), (0.3, 0.4), (0.3, 0.4)], "torch", 1),   # the tokenizer is the model's match
    ([(0.3, 0.4), (0.1, 4.0), (0.1, 4.0)], "torch", 2),   # the model dominates: both cores
    ([(0.3, 0.4), (0.3, 0.4), (0.3, 0.4)], "onnxruntime", 2),  # its threads are set once
])
def test_the_model_gives_the_tokenizer_a_core_when_tokenizing_costs_as_much(
        monkeypatch, blocks, engine, threads):
    import types

    import torch

    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    infer = types.SimpleNamespace(engine=types.SimpleNamespace(name=engine))
    balance = in_process.ThreadBalance(infer, threads=2)
    for tokenize_s, model_s in blocks + [(5.0, 0.1)]:  # later blocks change nothing
        balance.after_block(tokenize_s, model_s)
    assert balance.threads == threads
    assert chosen == ([threads] if threads != 2 else [])


def test_later_blocks_are_joined_into_bigger_sort_windows_unless_the_spec_sets_one():
    import pyarrow as pa

    blocks = [pa.table({"x": list(range(n))}) for n in (1024, 1024, 1024, 1024, 1024, 500)]
    default = parse_spec({"task": "text-classification", "model": "m", "input": "in",
                          "output": "out"})
    assert [b.num_rows for b in in_process.regrouped(iter(blocks), default)] == [1024, 4096, 500]
    assert sum(b.num_rows for b in in_process.regrouped(iter(blocks), default)) == 5620
    pinned = parse_spec({"task": "text-classification", "model": "m", "input": "in",
                         "output": "out", "batching": {"window_rows": 1024}})
    assert [b.num_rows for b in in_process.regrouped(iter(blocks), pinned)] == [
        1024] * 5 + [500]
    assert list(in_process.regrouped(iter([]), default)) == []
