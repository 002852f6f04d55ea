"""Ray's own local autoscaling cluster for tests: `ray start --head --autoscaling-config` with the
fake multinode provider (RAY_FAKE_CLUSTER=1), a CPU-only head and a worker type with `GPU: 1`
that the autoscaler launches from 0 to 2 nodes on this machine (torch sees no CUDA in them).

Everything runs under its own temp dir and GCS port (the provider's `gcs_address` points new
nodes at it), so it never touches another Ray on the machine; teardown kills only processes
with that temp dir on their command line and their descendants (the fake worker nodes are
children of the head's autoscaler)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests import processes
from tests.conftest import free_port

from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

WORKER_TYPE = "gpu_worker"
FAKE_NODE_ENV = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"  # the node id the provider gives each node


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def token_auth_env() -> dict:
    """The environment for a `ray start` cluster with Ray 2.60's token authentication (and
    its clients), generating the user's token once if there is none; RAY_ADDRESS removed so
    nothing joins another cluster."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    if not os.path.isfile(os.path.expanduser("~/.ray/auth_token")) and \
            not env.get("RAY_AUTH_TOKEN"):
        subprocess.run([ray_cli(), "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True)
    return env


def autoscaling_config(gcs_address: str, max_gpu_workers: int = 2) -> dict:
    return {
        "cluster_name": "corpusmill-test", "max_workers": max_gpu_workers,
        "idle_timeout_minutes": 5, "upscaling_speed": 1.0,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {"resources": {"CPU": 1, "GPU": 1}, "node_config": {},
                          "min_workers": 0, "max_workers": max_gpu_workers},
        },
        "head_node_type": "ray.head.default", "auth": {}, "docker": {}, "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class AutoscalingCluster:
    address: str
    temp: str
    env: dict

    @classmethod
    def start(cls) -> "AutoscalingCluster":
        temp = tempfile.mkdtemp(prefix="cmas")  # short: Ray's socket paths are limited
        port = free_port()
        address = f"127.0.0.1:{port}"
        config = Path(temp) / "autoscaling.json"
        config.write_text(json.dumps(autoscaling_config(address)))
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        cluster = cls(address=address, temp=temp, env=env)
        try:
            subprocess.run([ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=1",
                            f"--autoscaling-config={config}", f"--temp-dir={temp}",
                            "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                            "--include-dashboard=false",
                            f"--dashboard-agent-listen-port={free_port()}"],
                           env=head_env, check=True, capture_output=True, timeout=180)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def worker_nodes(self) -> list[str]:
        """Ids of the fake worker nodes alive now (from their processes' environment)."""
        ids = set()
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if not any("raylet" in part for part in proc.info["cmdline"] or []):
                    continue
                node = proc.environ().get(FAKE_NODE_ENV)
            except (psutil.Error, OSError):
                continue
            if node and node != FAKE_HEAD_NODE_ID and self.temp in " ".join(proc.info["cmdline"]):
                ids.add(node)
        return sorted(ids)

    def terminate_node(self, node_id: str) -> int:
        """What the fake provider's terminate_node does: kill every process of that worker
        node (of this cluster: the provider numbers nodes alike in every cluster). Returns how
        many were killed."""
        if node_id == FAKE_HEAD_NODE_ID:
            raise ValueError("that is the head node")
        node = []
        for proc in processes.marked(self.temp):
            try:
                if proc.environ().get(FAKE_NODE_ENV) == node_id:
                    node.append(proc)
            except (psutil.Error, OSError):
                continue
        return processes.kill(node)

    def wait_for_workers(self, count: int, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = self.worker_nodes()
            if len(nodes) >= count:
                return nodes
            time.sleep(0.5)
        raise TimeoutError(f"{count} worker node(s) never came up")

    def stop(self) -> None:
        processes.kill(processes.marked(self.temp))  # the head, its nodes, their workers
