"""Every private or undocumented Ray API corpusmill relies on, in one place.

Ray keeps these out of its public API, so any Ray release may rename or remove them. Keeping
them here means an upgrade touches one module, and tests/unit/test_ray_internals.py (one test
per item below) fails loudly, naming the item, when an installed Ray no longer has what is used.
Proven with Ray 2.57.1, 2.58.1, 2.59.0 and 2.60.0 (pyproject.toml's range).

What is used, and why no public API serves:

1. `HEAD_RESOURCE` (`node:__internal_head__`): the resource only the head node has. Run
   statistics live in an actor pinned to the head (a lost worker node must never lose them)
   and the head is told apart in `ray.nodes()`. Ray 2.60 has no public "is head" field in
   `ray.nodes()`; the state API's `list_nodes(is_head_node)` needs the dashboard, which local
   runs do not start. Ray Data and Ray Train pin their own state actors the same way.
2. `gcs_cluster_config()`: the node groups an autoscaler can launch, as the cluster config
   the autoscaler publishes in the GCS (`ray._private.state.state.get_cluster_config()`).
   Ray Data's own autoscaler reads it the same way; no public API exposes it
   (`ray.autoscaler.sdk` works on a cluster launcher's YAML, not on a running cluster).
3. `running_autoscaler_config(gcs_port)`: Ray 2.60's `ray up` / `ray start
   --autoscaling-config` autoscalers do not publish that cluster config, so the config file
   the running autoscaler was started with is found from its process on this machine: Ray's
   `monitor.py` with `--gcs-address=` and `--autoscaling-config=` on its command line.
4. `set_repartition_cpus(ds, cpus)`: `Dataset.repartition` takes no task options (no
   `num_cpus`, no `ray_remote_args`) in Ray 2.57-2.60, and its tasks ask for a whole CPU, which
   a small head node running inference actors never has free. The last logical operator of the
   dataset (`ds._logical_plan.dag`, a frozen dataclass) gets its `ray_remote_args` replaced.
5. `LOOPBACK_INIT_ARGS`: `ray.init(_node_ip_address="127.0.0.1")`, a local Ray bound to
   loopback (a laptop's or CI machine's address can change or be unroutable); `ray.init` takes
   it through **kwargs and does not document it.

The test suite itself also uses a few Ray internals, guarded by the same test module: the fake
multinode provider's `FAKE_HEAD_NODE_ID` (tests/integration/autoscaling.py), the launcher's
`prepare_config` / `validate_config` (tests/unit/test_cluster_yaml.py) and `ray.init`'s
`_system_config` (tests/conftest.py).
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

HEAD_RESOURCE = "node:__internal_head__"
LOOPBACK_INIT_ARGS = {"_node_ip_address": "127.0.0.1"}
AUTOSCALER_SCRIPT = "monitor.py"


def gcs_cluster_config():
    """The cluster config (`autoscaler_pb2.ClusterConfig`) an autoscaler published in the GCS
    of the connected Ray, or None when none is published or this Ray cannot tell."""
    try:
        import ray._private.state

        return ray._private.state.state.get_cluster_config()
    except Exception as e:  # noqa: BLE001 - a Ray without this state: no config, not a failure
        log.debug("no GCS cluster config: %s", e)
        return None


def running_autoscaler_config(gcs_port: str) -> str | None:
    """The `--autoscaling-config` path of the autoscaler process serving the GCS on `gcs_port`,
    when that process runs on this machine; else None."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info.get("cmdline") or []
        if not any(a.endswith(AUTOSCALER_SCRIPT) for a in args):
            continue
        gcs = next((a.split("=", 1)[1] for a in args if a.startswith("--gcs-address=")), "")
        config = next((a.split("=", 1)[1] for a in args
                       if a.startswith("--autoscaling-config=")), None)
        if config and gcs.rsplit(":", 1)[-1] == gcs_port:
            try:
                return os.path.join(proc.cwd(), os.path.expanduser(config))
            except (psutil.Error, OSError):
                return os.path.expanduser(config)
    return None


def set_repartition_cpus(ds, cpus: float):
    """`ds` (a Dataset whose last step is a repartition) with that step's tasks asking for
    `cpus` CPUs. Returns `ds`; a Ray whose plan has another shape leaves it unchanged."""
    op = getattr(getattr(ds, "_logical_plan", None), "dag", None)
    if op is not None and isinstance(getattr(op, "ray_remote_args", None), dict):
        object.__setattr__(op, "ray_remote_args", {**op.ray_remote_args, "num_cpus": cpus})
    return ds
