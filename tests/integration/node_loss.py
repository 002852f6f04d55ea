"""Run a job on a 2-node local Ray cluster (ray.cluster_utils.Cluster) and remove the worker
node once output starts to appear. Used by test_worker_faults.py in a separate process, since
the test session already holds a Ray of its own.

    python -m tests.integration.node_loss JOB.yaml   -> prints 'NODE_REMOVED' and the summary
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path


def main(job: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from corpusmill.jobs.run import run_job
    from corpusmill.spec import load_spec

    spec = load_spec(job)
    # The head keeps room for tasks after the worker goes: if restarted inference actors held
    # every surviving CPU, read and tokenize tasks could never be scheduled (see README,
    # "Sizing actors on a cluster").
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, logging_level="WARNING")
    cluster.wait_for_nodes()

    removed = threading.Event()

    def remove_worker_when_output_appears():
        while not list(Path(spec.output).glob("*.parquet")):
            time.sleep(0.02)
        cluster.remove_node(worker)
        removed.set()

    threading.Thread(target=remove_worker_when_output_appears, daemon=True).start()
    try:
        summary = run_job(spec)
    finally:
        ray.shutdown()
        cluster.shutdown()
    if removed.is_set():  # said after the run: during it, the run's output goes to its log
        print("NODE_REMOVED", flush=True)
    print("\n".join(summary.lines()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
