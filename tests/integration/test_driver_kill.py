"""A job whose driver is SIGKILLed at several moments, rerun until done, ends with every input
id exactly once and the same outputs as a clean run; a resume redoes no committed row."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_parquet
from tests.corpora import varied_texts
from tests.integration import faults
from tests.integration.faults import CliRun, committed_rows, data_files

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]

FILES, ROWS_PER_FILE = 4, 600


@pytest.fixture
def corpus(tmp_path):
    texts = varied_texts(FILES * ROWS_PER_FILE, seed=11)
    for part in range(FILES):
        chunk = texts[part * ROWS_PER_FILE:(part + 1) * ROWS_PER_FILE]
        write_parquet(tmp_path / "corpus" / f"part-{part}.parquet", {"body": chunk},
                      row_group_size=150)
    return tmp_path / "corpus"


def job_file(tmp_path, tiny, corpus, name):
    return faults.job_file(tmp_path, tiny.classifier, corpus, name, resources={"concurrency": 1})


def rows_by_id(output):
    return {r["row_id"]: r for r in pq.read_table(output).to_pylist()}


def test_driver_killed_at_many_points_then_resumed(tmp_path, tiny, corpus):
    clean = CliRun(job_file(tmp_path, tiny, corpus, "clean"))
    assert clean.wait() == 0, clean.output()
    expected = rows_by_id(tmp_path / "clean")
    assert len(expected) == FILES * ROWS_PER_FILE

    out = tmp_path / "faulty"
    job = job_file(tmp_path, tiny, corpus, "faulty")
    kill_points = [  # each run is killed at the first of these that holds for it
        ("while Ray starts", lambda run, before: run.elapsed() > 1.0),
        ("before any row is written", lambda run, before: (out / ".corpusmill" / "manifest.json").exists()
         and run.elapsed() > 4.0 and not data_files(out)),
        ("after the first file", lambda run, before: len(data_files(out)) > before),
        ("after a few files", lambda run, before: len(data_files(out)) >= before + 3),
        ("mid-job", lambda run, before: committed_rows(out) >= FILES * ROWS_PER_FILE // 2),
        ("late", lambda run, before: committed_rows(out) >= FILES * ROWS_PER_FILE * 0.8),
    ]
    killed = []
    for name, point in kill_points:
        before = len(data_files(out))
        run = CliRun(job)
        if run.kill_when(lambda: point(run, before)):
            killed.append(name)
        else:
            assert run.wait() == 0, run.output()
            break
    assert len(killed) >= 5, f"only killed at: {killed}"

    final = CliRun(job)
    assert final.wait() == 0, final.output()
    got = rows_by_id(out)
    table = pq.read_table(out, columns=["row_id"])
    assert table.num_rows == len(got) == len(expected)  # every id exactly once
    for row_id, want in expected.items():
        assert got[row_id]["label"] == want["label"]
        assert got[row_id]["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got[row_id]["body"] == want["body"]


def test_resume_after_a_mid_job_kill_redoes_no_committed_row(tmp_path, tiny, corpus):
    out = tmp_path / "resumed"
    job = job_file(tmp_path, tiny, corpus, "resumed")
    run = CliRun(job)
    assert run.kill_when(lambda: committed_rows(out) >= FILES * ROWS_PER_FILE // 2)
    # committed = ids in Ray's committed checkpoint files (a data file whose checkpoint was
    # still pending at the kill is deleted by the resume and its rows recomputed)
    committed = sum(pq.read_metadata(p).num_rows for p in (out / ".corpusmill" / "checkpoint").glob("*.parquet")
                    if ".pending." not in p.name)
    assert committed > 0
    resume = CliRun(job)
    assert resume.wait() == 0, resume.output()
    total = FILES * ROWS_PER_FILE
    assert f"resumed: {committed} rows were already done by an earlier run, " \
           f"{total - committed} written now" in resume.output()
    assert pq.read_table(out).num_rows == total
