"""Faults below the driver: an inference actor killed mid-job, a worker node removed from a
multi-node cluster, and the state an object store leaves when a checkpoint commit (copy, then
delete) is interrupted. Each ends with every input id exactly once and clean-run outputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, main
from tests import processes
from tests.conftest import write_parquet
from tests.corpora import varied_texts
from tests.integration import faults
from tests.integration.faults import REPO, data_files

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROWS = 1600


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults") / "corpus"
    texts = varied_texts(ROWS, seed=21)
    for part in range(4):
        write_parquet(folder / f"part-{part}.parquet",
                      {"body": texts[part * 400:(part + 1) * 400]}, row_group_size=100)
    return folder


def job_file(tmp_path, tiny, corpus, name, **extra):
    return faults.job_file(tmp_path, tiny.classifier, corpus, name, **extra)


@pytest.fixture(scope="module")
def clean_rows(tmp_path_factory, tiny, corpus, ray_session):
    tmp = tmp_path_factory.mktemp("clean")
    assert main(["run", str(job_file(tmp, tiny, corpus, "clean"))]) == EXIT_OK
    return {r["row_id"]: r for r in pq.read_table(tmp / "clean").to_pylist()}


def assert_same_as_clean(output, clean_rows):
    got = pq.read_table(output).to_pylist()
    assert len(got) == len(clean_rows) == ROWS
    by_id = {r["row_id"]: r for r in got}
    assert len(by_id) == ROWS  # every id exactly once
    for row_id, want in clean_rows.items():
        assert by_id[row_id]["label"] == want["label"]
        assert by_id[row_id]["score"] == pytest.approx(want["score"], abs=1e-4)


def test_inference_actor_killed_mid_job(tmp_path, tiny, corpus, ray_session, clean_rows):
    job = job_file(tmp_path, tiny, corpus, "actor-kill")
    out = tmp_path / "actor-kill"
    killed = []

    def kill_infer_actor_once_output_appears():
        deadline = time.monotonic() + 120
        while not data_files(out) and time.monotonic() < deadline:
            time.sleep(0.01)
        # this session's own Ray runs below this process (ray.init started it): its inference
        # actors are our descendants, named by Ray as `ray::MapWorker(MapBatches(Infer))...`
        actors = [p for p in processes.tree(os.getpid())[1:] if _is_infer_actor(p)]
        killed.extend(p.pid for p in actors)
        processes.kill(actors)

    killer = threading.Thread(target=kill_infer_actor_once_output_appears)
    killer.start()
    assert main(["run", str(job)]) == EXIT_OK
    killer.join()
    assert killed, "no inference actor was found to kill"
    assert_same_as_clean(out, clean_rows)


def _is_infer_actor(proc) -> bool:
    try:
        title = " ".join(proc.cmdline())
    except psutil.Error:  # gone meanwhile
        return False
    return title.startswith("ray::MapWorker") and "Infer" in title


def test_worker_node_removed_mid_job(tmp_path, tiny, corpus, clean_rows):
    job = job_file(tmp_path, tiny, corpus, "node-loss", resources={"concurrency": 2})
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="cmnode")}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run([sys.executable, "-m", "tests.integration.node_loss", str(job)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:  # a run cut short by the timeout leaves its cluster: only that one (its temp dir)
        processes.kill(processes.marked(env["RAY_TMPDIR"]))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "NODE_REMOVED" in done.stdout
    assert f"{ROWS} rows in from 4 file(s), {ROWS} out" in done.stdout
    assert_same_as_clean(tmp_path / "node-loss", clean_rows)


def test_interrupted_object_store_commit_loses_no_row(tmp_path, tiny, corpus, ray_session,
                                                      clean_rows):
    """On S3/GCS a checkpoint 'rename' is copy-then-delete; a kill in between leaves a
    committed checkpoint beside its pending twin. Recreate that state and resume."""
    job = job_file(tmp_path, tiny, corpus, "object-store")
    out = tmp_path / "object-store"
    assert main(["run", str(job)]) == EXIT_OK
    committed = sorted(p for p in (out / ".corpusmill" / "checkpoint").glob("*.parquet")
                       if ".pending." not in p.name)
    assert committed
    victim = committed[len(committed) // 2]
    shutil.copy(victim, victim.with_name(victim.name.replace(".parquet", ".pending.parquet")))
    assert main(["run", str(job)]) == EXIT_OK
    assert not list((out / ".corpusmill" / "checkpoint").glob("*.pending.parquet"))
    assert_same_as_clean(out, clean_rows)
