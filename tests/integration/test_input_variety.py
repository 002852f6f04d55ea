"""Corpora that are awkward but valid run to completion without losing a row: an empty file
among others, kept columns missing from some files, corrupt files skipped and listed; a model
whose weights cannot load fails fast with the loader's error."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, main
from tests.conftest import write_job, write_parquet

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow


def test_empty_file_and_differing_schemas(tmp_path, tiny, ray_session, capsys):
    folder = tmp_path / "in"
    write_parquet(folder / "a.parquet", {"text": ["one", "two"], "stars": pa.array([1, 2], pa.int32())})
    write_parquet(folder / "b.parquet", {"text": pa.array([], pa.string())})
    write_parquet(folder / "c.parquet", {"text": ["three"], "lang": ["en"], "stars": [3]})
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(folder), output=str(tmp_path / "out"))
    assert main(["run", str(job)]) == EXIT_OK
    out = pq.read_table(tmp_path / "out")
    assert out.schema.field("stars").type == pa.int64()  # int32 and int64 widen to int64
    rows = {r["row_id"]: r for r in out.to_pylist()}
    assert rows == {
        "a.parquet:0": rows["a.parquet:0"] | {"text": "one", "stars": 1, "lang": None},
        "a.parquet:1": rows["a.parquet:1"] | {"text": "two", "stars": 2, "lang": None},
        "c.parquet:0": rows["c.parquet:0"] | {"text": "three", "stars": 3, "lang": "en"},
    }
    assert all(r["label"] and r["error"] is None for r in rows.values())
    assert "3 rows in from 3 file(s), 3 out" in capsys.readouterr().out


def test_corrupt_files_skipped_on_request_and_listed(tmp_path, tiny, ray_session, capsys):
    folder = tmp_path / "in"
    write_parquet(folder / "good.parquet", {"text": ["fine", "also fine"]})
    (folder / "torn.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(folder), output=str(tmp_path / "out"), skip_corrupt_files=True)
    assert main(["run", str(job)]) == EXIT_PARTIAL  # a file was skipped
    assert pq.read_table(tmp_path / "out").num_rows == 2
    out = capsys.readouterr().out
    assert "skipped 1 corrupt file(s) or part(s): torn.parquet" in out


def test_weights_that_cannot_load_fail_fast_with_the_loaders_error(tmp_path, tiny, ray_session,
                                                                   capsys):
    import shutil

    model = tmp_path / "torn-weights"
    shutil.copytree(tiny.classifier, model)
    weights = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    path = write_parquet(tmp_path / "in" / "a.parquet", {"text": ["x"] * 20})
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=str(model),
                    input=str(path), output=str(tmp_path / "out"))
    assert main(["run", str(job)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "corpusmill: job failed" in err and "SafetensorError" in err
