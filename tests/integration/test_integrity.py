"""Output that can be trusted after anything (issue 12's symptoms, each through the CLI):
changed input is never silently kept, compatible id types are widened, damaged data pages are
named or skipped, and failures are one clear line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_INVALID, EXIT_OK, EXIT_PARTIAL, main
from tests.conftest import write_job, write_parquet
from tests.corpora import damage_pages, varied_texts
from tests.integration.faults import REPO, CliRun, committed_rows

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def texts(n, seed=0):
    return [t or "empty" for t in varied_texts(n, seed=seed)]


def job(tmp_path, model, folder, **spec):
    return write_job(tmp_path / "job.yaml", task="text-classification", model=model,
                     input=str(folder), output=str(tmp_path / "out"), **spec)


def test_a_rerun_after_an_input_file_changed_is_refused_naming_it(tmp_path, tiny, ray_session,
                                                                  capsys):
    corpus = tmp_path / "corpus"
    write_parquet(corpus / "a.parquet", {"id": [f"a{i}" for i in range(40)], "text": texts(40)})
    write_parquet(corpus / "b.parquet", {"id": [f"b{i}" for i in range(40)],
                                         "text": texts(40, 1)})
    spec = job(tmp_path, tiny.classifier, corpus, id_column="id")
    assert main(["run", str(spec)]) == EXIT_OK
    # the same ids with new texts, plus new rows: the output's rows for them are stale now
    write_parquet(corpus / "b.parquet", {"id": [f"b{i}" for i in range(60)],
                                         "text": texts(60, 2)})
    capsys.readouterr()
    assert main(["run", str(spec)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "'b.parquet' changed since an earlier run of this job read them" in err
    assert "output_mode: overwrite" in err and "'a.parquet'" not in err
    # the fix: recompute the output from the input as it is now
    assert main(["run", str(spec), "--set", "output_mode=overwrite"]) == EXIT_OK
    out = pq.read_table(tmp_path / "out", columns=["id"]).column("id").to_pylist()
    assert sorted(out) == sorted([f"a{i}" for i in range(40)] + [f"b{i}" for i in range(60)])
    # touching a file without changing it is not a change
    os.utime(corpus / "a.parquet")
    assert main(["run", str(spec)]) == EXIT_OK


@pytest.mark.parametrize("types", [(pa.string(), pa.large_string()), (pa.int32(), pa.int64())],
                         ids=["string+large_string", "int32+int64"])
def test_id_columns_of_compatible_types_are_widened(tmp_path, tiny, ray_session, capsys, types):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for part, arrow_type in enumerate(types):  # e.g. one file by pyarrow, one by pandas 3
        ids = [part * 100 + i for i in range(30)]
        ids = ids if pa.types.is_integer(arrow_type) else [f"d{i}" for i in ids]
        pq.write_table(pa.table({"id": pa.array(ids, arrow_type), "text": texts(30, part)}),
                       corpus / f"part-{part}.parquet")
    spec = job(tmp_path, tiny.classifier, corpus, id_column="id")
    assert main(["validate", str(spec)]) == EXIT_OK
    assert main(["run", str(spec)]) == EXIT_OK
    out = pq.read_table(tmp_path / "out")
    assert out.num_rows == len(set(out.column("id").to_pylist())) == 60
    assert out.schema.field("id").type == types[1]  # the wider of the two


def test_incompatible_id_types_are_refused_naming_file_column_and_types(tmp_path, tiny, capsys):
    corpus = tmp_path / "corpus"
    write_parquet(corpus / "a.parquet", {"id": [1, 2], "text": ["x", "y"]})
    write_parquet(corpus / "b.parquet", {"id": ["one", "two"], "text": ["x", "y"]})
    assert main(["validate", str(job(tmp_path, tiny.classifier, corpus, id_column="id"))]) \
        == EXIT_INVALID
    err = capsys.readouterr().err
    assert "column 'id' is int64 in 'a.parquet' but string in 'b.parquet'" in err
    assert "Traceback" not in err


def damaged_corpus(folder):
    write_parquet(folder / "good.parquet", {"id": [f"g{i}" for i in range(100)],
                                            "text": texts(100)}, row_group_size=50)
    bad = write_parquet(folder / "bad.parquet", {"id": [f"b{i}" for i in range(150)],
                                                 "text": texts(150, 3)}, row_group_size=50)
    damage_pages(bad, "text", row_group=1)
    return bad


def test_damaged_data_pages_are_named_and_the_job_refused(tmp_path, tiny, ray_session, capsys):
    damaged_corpus(tmp_path / "corpus")
    assert main(["run", str(job(tmp_path, tiny.classifier, tmp_path / "corpus"))]) \
        == EXIT_INVALID
    err = capsys.readouterr().err
    assert "cannot read row group 1 of Parquet file 'bad.parquet'" in err
    assert "skip_corrupt_files: true" in err
    assert "Traceback" not in err and "\x1b[" not in err and "ray::" not in err


def test_damaged_id_pages_are_found_before_any_work(tmp_path, tiny, capsys):
    bad = damaged_corpus(tmp_path / "corpus")
    damage_pages(bad, "id", row_group=2)
    assert main(["run", str(job(tmp_path, tiny.classifier, tmp_path / "corpus",
                                id_column="id"))]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "cannot read the id column 'id' of Parquet file 'bad.parquet'" in err
    assert not (tmp_path / "out").exists()


def test_skip_corrupt_files_skips_the_damaged_row_group_and_lists_it(tmp_path, tiny,
                                                                      ray_session, capsys):
    damaged_corpus(tmp_path / "corpus")
    spec = job(tmp_path, tiny.classifier, tmp_path / "corpus", skip_corrupt_files=True)
    assert main(["run", str(spec)]) == EXIT_PARTIAL
    out = capsys.readouterr().out
    assert "250 rows in from 2 file(s), 200 out" in out
    assert "bad.parquet (row group 1: 50 rows)" in out
    ids = pq.read_table(tmp_path / "out", columns=["row_id"]).column("row_id").to_pylist()
    assert len(ids) == len(set(ids)) == 200
    assert not any(i.startswith("bad.parquet:") and 50 <= int(i.split(":")[1]) < 100
                   for i in ids)


def test_on_error_raise_is_one_line_naming_the_row(tmp_path, tiny, ray_session, capsys):
    write_parquet(tmp_path / "c.parquet", {"text": ["fine", None, "also fine"]})
    spec = job(tmp_path, tiny.classifier, tmp_path / "c.parquet", on_error="raise")
    assert main(["run", str(spec)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("corpusmill text-classification: ")]  # progress lines
    assert len(err) == 1, err
    assert err[0].startswith("corpusmill: job stopped: row row_id='c.parquet:1': column 'text' "
                             "is null (on_error: raise; set on_error: record")
    assert "rerun" not in err[0] or "resume" in err[0]
    assert "\x1b[" not in err[0] and "ray::" not in err[0] and "UserCodeException" not in err[0]


def test_ctrl_c_stops_the_run_with_one_line_and_a_rerun_loses_nothing(tmp_path, tiny):
    write_parquet(tmp_path / "c.parquet", {"text": texts(3000, 5)}, row_group_size=100)
    spec = job(tmp_path, tiny.classifier, tmp_path / "c.parquet",
               batching={"window_rows": 100})
    run = CliRun(spec)
    deadline = time.monotonic() + 240
    while committed_rows(tmp_path / "out") == 0:
        assert run.proc.poll() is None and time.monotonic() < deadline, run.output()[-2000:]
        time.sleep(0.05)
    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    assert run.wait(timeout=60) == 130
    said = [line for line in run.output().splitlines()
            if not line.startswith("corpusmill text-classification: ")]
    assert len(said) == 1, said
    assert said[0].startswith("corpusmill: SIGINT: the run stopped; ")
    assert "run the same command again to resume" in said[0]
    rerun = CliRun(spec)
    assert rerun.wait(timeout=300) == EXIT_OK, rerun.output()[-2000:]
    ids = pq.read_table(tmp_path / "out", columns=["row_id"]).column("row_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3000


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "no-network"])
def test_model_paths_fail_fast_and_exactly(tmp_path, tiny, capsys, monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    write_parquet(tmp_path / "c.parquet", {"text": ["a"]})
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    cases = {
        "models/nope/here": "model folder",  # a path, never sent to the hub
        str(tmp_path / "weights.safetensors"): "is a file",
        # no machine here reaches the hub: a hub id fails at once, saying why
        "someorg/not-a-model": "local Hugging Face cache" if offline else "cannot be reached",
    }
    for model, said in cases.items():
        started = time.monotonic()
        assert main(["validate", str(job(tmp_path, model, tmp_path / "c.parquet"))]) \
            == EXIT_INVALID
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err
        assert time.monotonic() - started < 15, f"{model}: took too long"


def test_a_refused_rerun_names_the_settings_that_differ(tmp_path, tiny, ray_session, capsys):
    write_parquet(tmp_path / "c.parquet", {"text": texts(20)})
    spec = job(tmp_path, tiny.classifier, tmp_path / "c.parquet")
    assert main(["run", str(spec)]) == EXIT_OK
    capsys.readouterr()
    assert main(["run", str(spec), "--set", "options.top_k=2"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "differs in options.top_k: 1 before, 2 now" in err


def test_a_closed_pipe_ends_quietly():
    listing = subprocess.Popen([sys.executable, "-m", "corpusmill.jobs.cli", "tasks"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.readline()
    listing.stdout.close()  # what `| head -1` does
    assert listing.wait(timeout=60) == 141
    assert listing.stderr.read() == b""
