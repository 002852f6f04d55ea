"""The pieces of scheduled and cluster runs, without Ray: the incremental ledger, hive partition
folders, the output lock, and the multi-node path check's verdict."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.stores.ledger import new_files, read_ledger, record_files
from corpusmill.jobs.stores.lock import OutputLock
from corpusmill.jobs.stores.storage import local_paths, unreachable
from corpusmill.jobs.stores.corpus import hive_partitions
from corpusmill.operators.readers.read import CorpusFile
from corpusmill.jobs.stores.output import LOCK


def corpus_file(name: str, size: int = 100, mtime_ns: int = 1) -> CorpusFile:
    return CorpusFile(path=f"/data/{name}", name=name, row_groups=(10,),
                      schema=pa.schema([("text", pa.string())]), size_bytes=size,
                      mtime_ns=mtime_ns)


def test_ledger_keeps_finished_files_and_offers_only_new_ones(tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    first = [corpus_file("a.parquet"), corpus_file("b.parquet")]
    assert read_ledger(out) == {}
    assert new_files(first, {}) == first
    record_files(out, {}, first)
    ledger = read_ledger(out)
    assert set(ledger) == {"a.parquet", "b.parquet"}
    grown = first + [corpus_file("c.parquet")]
    assert [f.name for f in new_files(grown, ledger)] == ["c.parquet"]
    record_files(out, ledger, [corpus_file("c.parquet")])
    assert new_files(grown, read_ledger(out)) == []
    assert not os.path.exists(os.path.join(out, ".corpusmill", "files.json.tmp"))


def test_a_finished_file_that_changed_is_refused_by_name(tmp_path):
    ledger = {"a.parquet": {"size": 100, "mtime_ns": 1}}
    with pytest.raises(JobError, match=r"'a.parquet' changed after an earlier incremental run.*"
                                       r"output_mode: overwrite"):
        new_files([corpus_file("a.parquet", size=120)], ledger)


def test_hive_partition_folders_become_columns():
    assert hive_partitions("date=2026-11-22/lang=en/part-0.parquet") == (
        ("date", "2026-11-22"), ("lang", "en"))
    assert hive_partitions("part-0.parquet") == ()
    assert hive_partitions("raw/part=a=b/x.parquet") == (("part", "a=b"),)


def test_second_lock_on_an_output_is_refused_naming_the_holder(tmp_path):
    out = str(tmp_path / "out")
    with OutputLock(out, "run-one"):
        holder = json.loads(open(os.path.join(out, LOCK)).read())
        assert holder["pid"] == os.getpid() and holder["run_id"] == "run-one"
        with pytest.raises(JobError, match=r"being written by run run-one \(pid \d+"):
            with OutputLock(out, "run-two"):
                pass
        assert os.path.exists(os.path.join(out, LOCK))  # the refused run left it alone
    assert not os.path.exists(out)  # nothing was written: the folder it made is gone


def test_lock_of_a_dead_run_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"data")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket
    (out / LOCK).parent.mkdir()
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead),
                                        "run_id": "killed"}))
    with OutputLock(str(out), "rerun"):
        assert json.loads((out / LOCK).read_text())["run_id"] == "rerun"
    assert not (out / LOCK).exists() and (out / "part-0.parquet").exists()


def test_paths_a_node_cannot_see_are_named():
    views = {"node-b": {"input": False, "output": True}, "node-a": {"input": True,
                                                                    "output": True}}
    assert unreachable(views) == ["input on node node-b"]
    assert unreachable({"n": {"input": True}}) == []


def test_object_storage_paths_need_no_check(tmp_path):
    class Spec:
        input = "s3://bucket/corpus/*.parquet"
        output = str(tmp_path / "out")
    paths = local_paths(Spec, model_ref="org/model-id")
    assert paths == {"output": str(tmp_path / "out")}  # hub ids and URIs are not node-local
