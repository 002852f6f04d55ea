"""Input, output, checkpoint, manifest, ledger, lock and the model folder on S3: a real S3 API
(moto's server, tests/object_store.py) that enforces credentials and permissions, reached
through the standard AWS environment (AWS_ENDPOINT_URL, keys, region) as a user's job would.

Jobs run as separate `corpusmill run` processes with that environment (tests/integration/
faults.py); refusals are checked in-process, since they come before any Ray work."""
from __future__ import annotations

import json

import pytest

from corpusmill.jobs.cli import EXIT_INVALID, EXIT_NOTHING_NEW, EXIT_OK, main
from tests.conftest import write_job, write_parquet
from tests.corpora import varied_texts
from tests.integration.faults import CliRun
from tests.object_store import BUCKET, MotoS3

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(log=tmp_path_factory.mktemp("moto") / "requests.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_model(s3, tiny):
    return s3.upload(tiny.classifier, f"{ROOT}/models/clf/")


def s3_corpus(s3, tmp_path, prefix: str, parts: int = 2, rows: int = 100, seed: int = 3) -> str:
    texts = varied_texts(parts * rows, seed=seed)
    for part in range(parts):
        local = write_parquet(tmp_path / "local" / prefix / f"part-{part}.parquet",
                              {"body": texts[part * rows:(part + 1) * rows]})
        s3.upload(local, f"{ROOT}/{prefix}/part-{part}.parquet")
    return f"{ROOT}/{prefix}/"


def job(tmp_path, name: str, **spec):
    return write_job(tmp_path / f"{name}.yaml", task="text-classification",
                     columns={"text": "body"}, **spec)


def run(s3, job_file, *args, user="admin") -> CliRun:
    return CliRun(job_file, *args, env=s3.env(user))


def ids_once(s3, output: str, expected: int) -> list[str]:
    ids = s3.read_table(output, ["row_id"]).column("row_id").to_pylist()
    assert len(ids) == len(set(ids)) == expected
    return ids


def test_a_job_reads_writes_and_loads_its_model_on_object_storage(s3, s3_model, tmp_path):
    source = s3_corpus(s3, tmp_path, "full")
    output = f"{ROOT}/out-full/"
    cli = run(s3, job(tmp_path, "full", model=s3_model, input=source, output=output))
    assert cli.wait() == EXIT_OK, cli.output()[-3000:]
    assert "200 rows in from 2 file(s), 200 out" in cli.output()
    ids_once(s3, output, 200)

    manifest_text = s3.read_text(f"{output}.corpusmill/manifest.json")
    manifest = json.loads(manifest_text)
    assert manifest["status"] == "complete" and manifest["spec"]["model"] == s3_model
    for secret in s3.keys["admin"]:  # credentials are never written down
        assert secret not in manifest_text and secret not in cli.output()
    assert s3.data_files(f"{output}.corpusmill/checkpoint/"), "Ray's checkpoint lives in the output"
    assert s3.exists(f"{output}.corpusmill/logs/{manifest['run_id']}.log")
    assert not s3.exists(f"{output}.corpusmill/lock"), "the lock is released"

    again = run(s3, job(tmp_path, "full", model=s3_model, input=source, output=output))
    assert again.wait() == EXIT_OK and "resumed: 200 rows were already done" in again.output()
    ids_once(s3, output, 200)


def test_resume_after_kill_9_on_object_storage_writes_every_id_once(s3, s3_model, tmp_path):
    source = s3_corpus(s3, tmp_path, "kill", parts=4, rows=500, seed=9)
    output = f"{ROOT}/out-kill/"
    spec = job(tmp_path, "kill", model=s3_model, input=source, output=output,
               batching={"window_rows": 100})
    first = run(s3, spec)
    assert first.kill_when(lambda: len(s3.data_files(output)) >= 2, timeout=240), \
        "the job finished before it could be killed"
    rerun = run(s3, spec)
    assert rerun.wait(timeout=300) == EXIT_OK, rerun.output()[-3000:]
    assert "resumed:" in rerun.output()
    ids_once(s3, output, 2000)


def test_incremental_runs_on_object_storage_add_only_new_files(s3, s3_model, tmp_path):
    output = f"{ROOT}/out-incr/"
    source = s3_corpus(s3, tmp_path, "incr", parts=1)
    spec = job(tmp_path, "incr", model=s3_model, input=source, output=output, incremental=True)
    assert run(s3, spec).wait() == EXIT_OK
    ids_once(s3, output, 100)
    assert run(s3, spec).wait() == EXIT_NOTHING_NEW

    local = write_parquet(tmp_path / "new.parquet", {"body": varied_texts(50, seed=11)})
    s3.upload(local, f"{ROOT}/incr/part-new.parquet")
    added = run(s3, spec)
    assert added.wait() == EXIT_OK, added.output()[-3000:]
    assert "incremental: 1 new file(s); 1 done by earlier runs" in added.output()
    ids_once(s3, output, 150)
    ledger = json.loads(s3.read_text(f"{output}.corpusmill/files.json"))["files"]
    assert sorted(ledger) == ["part-0.parquet", "part-new.parquet"]


def test_overwrite_replaces_an_object_storage_output(s3, s3_model, tmp_path):
    source = s3_corpus(s3, tmp_path, "over", parts=1)
    output = f"{ROOT}/out-over/"
    assert run(s3, job(tmp_path, "a", model=s3_model, input=source, output=output)).wait() == 0
    before = set(s3.data_files(output))
    changed = job(tmp_path, "b", model=s3_model, input=source, output=output,
                  options={"top_k": 2}, output_mode="overwrite")
    cli = run(s3, changed)
    assert cli.wait() == EXIT_OK, cli.output()[-3000:]
    assert not before & set(s3.data_files(output)), "the earlier files are gone"
    table = s3.read_table(output, ["row_id", "labels"])
    assert table.num_rows == 100 and all(len(v) == 2 for v in table.column("labels").to_pylist())


@pytest.mark.parametrize("case, user, path_at_fault, fix", [
    ("missing bucket", "admin", "s3://no-such-bucket/in/", "does not exist: create it"),
    ("wrong credentials", "nobody", f"{ROOT}/refuse/", "refused the credentials"),
    ("no permission", "reader", f"{ROOT}/out-refused/", "s3:PutObject"),
])
def test_object_storage_refusals_are_exit_2_naming_the_path_and_fix(
        s3, s3_model, tmp_path, monkeypatch, capsys, case, user, path_at_fault, fix):
    source = s3_corpus(s3, tmp_path, "refuse", parts=1, rows=10)
    spec = {"model": s3_model, "input": source, "output": f"{ROOT}/out-refused/"}
    if case == "missing bucket":
        spec["input"] = path_at_fault
    for key, value in s3.env(user).items():
        monkeypatch.setenv(key, value)
    assert main(["run", str(job(tmp_path, "refused", **spec))]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "cannot " in err and repr(path_at_fault) in err and fix in err, err
    assert "Traceback" not in err
    for secret in s3.keys[user]:
        assert secret not in err
    assert not s3.data_files(f"{ROOT}/out-refused/")


def test_a_second_run_on_the_same_object_storage_output_is_refused(s3, s3_model, tmp_path,
                                                                  monkeypatch, capsys):
    """S3's conditional writes make the lock exclusive: a fresh lock object of another run
    refuses this one, naming its holder."""
    from corpusmill.jobs.stores.lock import OutputLock

    source = s3_corpus(s3, tmp_path, "locked", parts=1, rows=10)
    output = f"{ROOT}/out-locked/"
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    with OutputLock(output, "other-run"):
        assert main(["run", str(job(tmp_path, "locked", model=s3_model, input=source,
                                    output=output))]) == EXIT_INVALID
        with pytest.raises(Exception, match="being written by run other-run"):
            OutputLock(output, "third-run").__enter__()
    assert "being written by run other-run" in capsys.readouterr().err
    assert not s3.exists(f"{output}.corpusmill/lock")


def test_a_run_over_many_small_object_storage_files_writes_every_id_once(s3, s3_model,
                                                                         tmp_path):
    """200 files: inspected concurrently, their ids checked in hash partitions, every row
    written once, the counts from the output's footers."""
    files, rows = 200, 5
    texts = varied_texts(files * rows, seed=21)
    local = tmp_path / "many"
    for part in range(files):
        write_parquet(local / f"part-{part:03d}.parquet",
                      {"doc": [f"d{part * rows + i}" for i in range(rows)],
                       "body": texts[part * rows:(part + 1) * rows]})
    source = s3.upload(local, f"{ROOT}/many/")
    output = f"{ROOT}/out-many/"
    cli = run(s3, job(tmp_path, "many", model=s3_model, input=source, output=output,
                      id_column="doc"))
    assert cli.wait(timeout=300) == EXIT_OK, cli.output()[-3000:]
    assert f"{files * rows} rows in from {files} file(s), {files * rows} out" in cli.output()
    written = s3.read_table(output, ["doc"]).column("doc").to_pylist()
    assert sorted(written) == sorted(f"d{i}" for i in range(files * rows))
    stats = json.loads(s3.read_text(f"{output}.corpusmill/manifest.json"))["stats"]
    assert stats["driver"]["peak_rss_mb"] > 0


def test_a_json_lines_file_rewritten_on_object_storage_changes_its_fingerprint(s3, monkeypatch):
    """Same size, same head and tail, another middle, within the same second (S3's times
    have whole seconds): the store's ETag tells them apart."""
    from corpusmill.jobs.stores.corpus import SAMPLE_BYTES, open_corpus

    for key, value in s3.env("admin").items():
        monkeypatch.setenv(key, value)
    def lines(middle: str) -> str:
        pad = "x" * 100
        body = [f'{{"text": "{pad} {i}"}}' for i in range(2 * SAMPLE_BYTES // 100)]
        body[len(body) // 2] = f'{{"text": "{middle}{pad[len(middle):]} {len(body) // 2}"}}'
        return "\n".join(body) + "\n"

    fs = s3.fs()
    path = f"{BUCKET}/jsonl-etag/a.jsonl"
    with fs.open_output_stream(path) as f:
        f.write(lines("first").encode())
    before = open_corpus(f"{ROOT}/jsonl-etag/").stamps()["a.jsonl"]
    with fs.open_output_stream(path) as f:
        f.write(lines("again").encode())
    after = open_corpus(f"{ROOT}/jsonl-etag/").stamps()["a.jsonl"]
    assert before["size"] == after["size"]
    assert before["fingerprint"] != after["fingerprint"]


def test_preflight_reads_a_small_object_storage_file_in_two_requests(s3, tiny, tmp_path,
                                                                    monkeypatch):
    """A small Parquet file costs the preflight (inspection and the id check) two requests:
    the HEAD that opening it makes and one read of the whole file, whose bytes serve its
    footer, fingerprint and ids (before: four, the id check opened and read it again). The
    fingerprints are the footer's hash, as before; a duplicated id is still found, named."""
    from collections import Counter

    import pyarrow.fs as pafs

    from corpusmill.errors import JobError
    from corpusmill.jobs.stores.corpus import footer_fingerprint
    from corpusmill.jobs.preflight import preflight
    from corpusmill.spec import load_spec

    files, rows = 12, 4
    local = tmp_path / "small"
    for part in range(files):
        write_parquet(local / f"part-{part:02d}.parquet",
                      {"doc": [f"s{part * rows + i}" for i in range(rows)],
                       "body": [f"text {part} {i}" for i in range(rows)]})
    s3.upload(local, f"{ROOT}/small-reads/")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)

    def check(name: str, source: str):
        spec = job(tmp_path, name, model=str(tiny.classifier), input=source,
                   output=f"{ROOT}/out-{name}/", id_column="doc")
        return preflight(load_spec(str(spec)))

    start = s3.log_size()
    _, corpus = check("small-reads", f"{ROOT}/small-reads/")
    assert corpus.num_rows == files * rows and not corpus.contents  # the run holds no bytes
    per_file = Counter((path, method) for method, path in s3.requests(start)
                       if path.startswith(f"/{BUCKET}/small-reads/part-"))
    assert per_file == Counter({(f"/{BUCKET}/small-reads/part-{part:02d}.parquet", method): 1
                                for part in range(files) for method in ("HEAD", "GET")})
    disk = pafs.LocalFileSystem()
    for f in corpus.files:
        with disk.open_input_file(str(local / f.name)) as handle:
            assert f.fingerprint == footer_fingerprint(handle, handle.size())

    write_parquet(local / "part-99.parquet", {"doc": ["s5"], "body": ["again"]})
    s3.upload(local, f"{ROOT}/small-dups/")
    with pytest.raises(JobError, match=r"1 duplicated id\(s\), e.g. 's5' x2 \(in "
                                       r"part-01.parquet, part-99.parquet\)"):
        check("small-dups", f"{ROOT}/small-dups/")
