"""Scheduled runs over a growing corpus: each run processes only new files and adds their rows,
so every row ends up in the output exactly once; a run with nothing new does nothing and says
so (exit 4); two overlapping runs of one job never both write; hive partitions are kept."""
from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_INVALID, EXIT_NOTHING_NEW, EXIT_OK, main
from corpusmill.jobs.stores.output import LEDGER
from corpusmill.jobs.stores.output import LOCK
from tests.conftest import write_job, write_parquet
from tests.corpora import varied_texts
from tests.integration.faults import CliRun

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]

TEXTS = varied_texts(180, seed=31)


def add_file(corpus, index: int, rows: int = 60, folder: str = ""):
    texts = TEXTS[index * rows:(index + 1) * rows]
    return write_parquet(corpus / folder / f"part-{index}.parquet",
                         {"doc": [f"d{index}-{i}" for i in range(len(texts))], "body": texts})


def incremental_job(tmp_path, tiny, **extra):
    return write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                     input=str(tmp_path / "corpus"), output=str(tmp_path / "out"),
                     columns={"text": "body"}, id_column="doc", incremental=True,
                     batching={"window_rows": 32}, resources={"concurrency": 1}, **extra)


def output_ids(out) -> list[str]:
    return pq.read_table(out, columns=["doc"]).column("doc").to_pylist()


def test_three_runs_with_files_added_between_give_each_row_once(tmp_path, tiny, ray_session,
                                                                capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    add_file(corpus, 0)
    job = incremental_job(tmp_path, tiny)
    assert main(["run", str(job)]) == EXIT_OK
    assert sorted(output_ids(out)) == sorted(f"d0-{i}" for i in range(60))

    add_file(corpus, 1)
    assert main(["run", str(job)]) == EXIT_OK
    second = capsys.readouterr().out
    assert "incremental: 1 new file(s); 1 done by earlier runs" in second
    assert "60 rows in from 1 file(s), 60 out" in second

    add_file(corpus, 2)
    assert main(["run", str(job)]) == EXIT_OK
    ids = output_ids(out)
    assert len(ids) == len(set(ids)) == 180
    assert set(ids) == {f"d{f}-{i}" for f in range(3) for i in range(60)}


def test_run_with_nothing_new_writes_nothing_and_says_so(tmp_path, tiny, ray_session, capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    add_file(corpus, 0)
    job = incremental_job(tmp_path, tiny)
    assert main(["run", str(job)]) == EXIT_OK
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert main(["run", str(job), "--incremental"]) == EXIT_NOTHING_NEW
    assert "nothing new: all 1 input file(s) were processed by earlier runs" in \
        capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_changed_input_file_is_refused_naming_it(tmp_path, tiny, ray_session, capsys):
    corpus = tmp_path / "corpus"
    add_file(corpus, 0)
    job = incremental_job(tmp_path, tiny)
    assert main(["run", str(job)]) == EXIT_OK
    time.sleep(0.01)
    add_file(corpus, 1, folder="")  # a new file is fine ...
    write_parquet(corpus / "part-0.parquet", {"doc": ["x"], "body": ["rewritten"]})  # ... this not
    assert main(["run", str(job)]) == EXIT_INVALID
    assert "'part-0.parquet' changed after an earlier incremental run" in capsys.readouterr().err


def test_two_overlapping_runs_of_one_job_do_not_both_write(tmp_path, tiny, capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    for index in range(3):
        add_file(corpus, index)
    job = incremental_job(tmp_path, tiny)
    first = CliRun(job)
    deadline = time.monotonic() + 120
    while not (out / LOCK).exists():
        assert first.proc.poll() is None, first.output()
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.02)
    assert main(["run", str(job)]) == EXIT_INVALID  # refused before any Ray work
    err = capsys.readouterr().err
    assert "is being written by run" in err and f"pid {first.proc.pid}" in err
    assert first.wait() == EXIT_OK, first.output()
    ids = output_ids(out)
    assert len(ids) == len(set(ids)) == 180
    assert (out / LEDGER).exists() and not (out / LOCK).exists()


def test_hive_partitions_are_kept_and_output_can_be_partitioned(tmp_path, tiny, ray_session):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    add_file(corpus, 0, folder="date=2026-11-21")
    add_file(corpus, 1, folder="date=2026-11-22")
    job = incremental_job(tmp_path, tiny, partition_by=["date"])
    assert main(["run", str(job)]) == EXIT_OK
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and "=" in p.name) == [
        "date=2026-11-21", "date=2026-11-22"]
    table = pq.read_table(out)  # pyarrow reads the partition folders back as a column
    rows = table.to_pylist()
    assert len(rows) == len({r["doc"] for r in rows}) == 120
    by_day = {}
    for r in rows:
        by_day.setdefault(str(r["date"]), set()).add(r["doc"].split("-")[0])
    assert by_day == {"2026-11-21": {"d0"}, "2026-11-22": {"d1"}}


@pytest.mark.parametrize("partition_by", [["nope"], ["label"]])
def test_partition_by_must_name_a_kept_column(tmp_path, tiny, partition_by, capsys):
    add_file(tmp_path / "corpus", 0)
    job = incremental_job(tmp_path, tiny, partition_by=partition_by)
    assert main(["run", str(job)]) == EXIT_INVALID
    assert "partition_by names" in capsys.readouterr().err
