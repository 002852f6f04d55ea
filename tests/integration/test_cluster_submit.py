"""`corpusmill submit` against a real Ray cluster of separate processes: a head (`ray start
--head`) and a second node (`ray start --address=...`) on ports of their own, the job sent
through the Ray Jobs API with corpusmill's code as its working_dir, followed to SUCCEEDED; then
status and logs, and the output checked (every id exactly once). Only this cluster's processes
are torn down: those with its own temp dir or GCS address on their command line, and their
descendants; never another Ray on the machine."""
from __future__ import annotations

import subprocess
import tempfile

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_NOTHING_NEW, EXIT_OK, main
from tests import processes
from tests.conftest import free_port, write_job, write_parquet
from tests.corpora import varied_texts
from tests.integration.autoscaling import ray_cli, token_auth_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    gcs = f"127.0.0.1:{free_port()}"
    dashboard_port = free_port()
    temp = tempfile.mkdtemp(prefix="cmclu")  # short: Ray's socket paths are limited
    env = token_auth_env()
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    # Each node's job agent listens on 52365 unless told otherwise; the test session's own
    # local Ray already holds that port, and a head without its agent refuses every job.
    try:
        subprocess.run([ray_cli(), "start", "--head", f"--port={gcs.split(':')[1]}",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                        f"--dashboard-agent-listen-port={free_port()}",
                        "--num-cpus=2", f"--temp-dir={temp}", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([ray_cli(), "start", f"--address={gcs}", "--num-cpus=1",
                        f"--dashboard-agent-listen-port={free_port()}", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        yield f"http://127.0.0.1:{dashboard_port}"
    finally:
        # the second node's processes name the GCS (--gcs-address=... / --address=...)
        processes.kill([*processes.marked(temp), *processes.marked(f"-address={gcs}", arg_end=True)])


def test_submitted_job_runs_on_a_two_node_cluster(tmp_path, tiny, cluster, capsys):
    texts = varied_texts(200, seed=41)
    for part in range(2):
        write_parquet(tmp_path / "corpus" / f"part-{part}.parquet",
                      {"body": texts[part * 100:(part + 1) * 100]})
    job = write_job(tmp_path / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(tmp_path / "corpus"), output=str(tmp_path / "out"),
                    columns={"text": "body"}, resources={"concurrency": 1}, incremental=True)
    assert main(["submit", str(job), "--address", cluster, "--wait"]) == EXIT_OK
    printed = capsys.readouterr().out
    submission = printed.split("submitted ", 1)[1].split(" ", 1)[0]
    assert f"{submission}: SUCCEEDED" in printed
    assert "200 rows in from 2 file(s), 200 out" in printed  # the job's own summary, from logs

    assert main(["status", submission, "--address", cluster]) == EXIT_OK
    assert f"{submission}: SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", submission, "--address", cluster]) == EXIT_OK
    assert "200 out" in capsys.readouterr().out

    ids = pq.read_table(tmp_path / "out", columns=["row_id"]).column("row_id").to_pylist()
    assert len(ids) == len(set(ids)) == 200

    # the same hourly job again: nothing new, and --wait gives the job's own exit status
    assert main(["submit", str(job), "--address", cluster, "--wait"]) == EXIT_NOTHING_NEW
    assert "nothing new: all 2 input file(s)" in capsys.readouterr().out


def test_unknown_submission_is_a_clear_error(cluster, capsys):
    assert main(["status", "corpusmill-nope", "--address", cluster]) != EXIT_OK
    assert "corpusmill-nope" in capsys.readouterr().err
