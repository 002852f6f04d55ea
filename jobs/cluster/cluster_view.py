"""Reading the cluster from a connected Ray: its alive nodes, and the node types its autoscaler
can add, as a `placement.ClusterView`.

Node types come from Ray's own state, in this order:
1. the cluster config in the GCS (what Ray Data reads; a private Ray API, see
   corpusmill/ray_internals.py): node groups with their resources and min/max counts. KubeRay
   and newer Ray autoscalers publish it;
2. Ray 2.60's autoscalers (`ray up`, `ray start --autoscaling-config`) do not publish it yet,
   so the config the running autoscaler itself was started with is read: its process on the
   head (`monitor.py --autoscaling-config=PATH` for this cluster's GCS) names the file, and
   `available_node_types` there are the types it launches. This needs the driver on the head
   node, which `corpusmill submit` and `ray job submit` give;
3. otherwise the cluster is taken as fixed: what is alive now is all there will be.
"""
from __future__ import annotations

import json
import logging

from corpusmill.jobs.cluster.placement import UNLIMITED, ClusterView, NodeNow, NodeType
from corpusmill.ray_internals import HEAD_RESOURCE, gcs_cluster_config, running_autoscaler_config

log = logging.getLogger(__name__)
__all__ = ["HEAD_RESOURCE", "read_cluster_view", "node_types_from_cluster_config",
           "node_types_from_autoscaling_config"]


def read_cluster_view() -> ClusterView:
    import ray

    nodes = tuple(NodeNow(node_id=n["NodeID"], cpus=n["Resources"].get("CPU", 0.0),
                          gpus=n["Resources"].get("GPU", 0.0),
                          is_head=HEAD_RESOURCE in n["Resources"])
                  for n in ray.nodes() if n.get("Alive"))
    types, cap, source = _gcs_node_types()
    if not types:
        types, cap, source = _autoscaler_node_types()
    return ClusterView(nodes=nodes, node_types=tuple(types), max_workers=cap,
                       source=source if types else "no autoscaler")


def node_types_from_cluster_config(config) -> list[NodeType]:
    """NodeTypes of a GCS `autoscaler_pb2.ClusterConfig` (head group excluded: it has a max
    count of 0 extra nodes, or it is the group of the head node itself)."""
    types = []
    for group in config.node_group_configs:
        resources = dict(group.resources)
        types.append(NodeType(name=group.name, cpus=float(resources.get("CPU", 0)),
                              gpus=float(resources.get("GPU", 0)),
                              max_workers=int(group.max_count), min_workers=int(group.min_count)))
    return [t for t in types if t.max_workers != 0]


def node_types_from_autoscaling_config(config: dict) -> tuple[list[NodeType], int | None]:
    """NodeTypes of an autoscaler config (`available_node_types`, the head's type left out) and
    the config's global `max_workers` cap."""
    head = config.get("head_node_type")
    types = []
    for name, node_type in (config.get("available_node_types") or {}).items():
        if name == head:
            continue
        resources = node_type.get("resources") or {}
        max_workers = node_type.get("max_workers", config.get("max_workers", UNLIMITED))
        types.append(NodeType(name=name, cpus=float(resources.get("CPU", 0)),
                              gpus=float(resources.get("GPU", 0)),
                              max_workers=int(max_workers),
                              min_workers=int(node_type.get("min_workers", 0))))
    cap = config.get("max_workers")
    return [t for t in types if t.max_workers != 0], (None if cap is None else int(cap))


def _gcs_node_types() -> tuple[list[NodeType], int | None, str]:
    config = gcs_cluster_config()
    if config is None:
        return [], None, ""
    return node_types_from_cluster_config(config), None, "the cluster config in Ray's GCS"


def _autoscaler_node_types() -> tuple[list[NodeType], int | None, str]:
    path = _running_autoscaler_config()
    if path is None:
        return [], None, ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith(".json"):
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except (OSError, ValueError) as e:
        log.warning("could not read the autoscaler's config %s: %s", path, e)
        return [], None, ""
    types, cap = node_types_from_autoscaling_config(config or {})
    return types, cap, f"the head's autoscaler ({path})"


def _running_autoscaler_config() -> str | None:
    """The `--autoscaling-config` of the autoscaler process serving this cluster's GCS, when it
    runs on this machine."""
    import ray

    return running_autoscaler_config(ray.get_runtime_context().gcs_address.rsplit(":", 1)[-1])
