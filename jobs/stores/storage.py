"""On a multi-node cluster every node reads the input and writes the output, so local paths must
be storage that all nodes see (a shared mount); object storage URIs always are. Checked by
asking each node, before any data moves: a path only the driver's machine has gets a clear
error instead of tasks failing on other nodes."""
from __future__ import annotations

import os
import uuid

from corpusmill.errors import JobError

PROBE = "_corpusmill_probe_"


def local_paths(spec, model_ref: str) -> dict[str, str]:
    """The job's paths that are node-local candidates: label -> path on the driver."""
    paths = {"input": _existing_part(spec.input), "output": spec.output}
    if os.path.isdir(model_ref):
        paths["model"] = model_ref
    return {label: path for label, path in paths.items() if "://" not in path}


def unreachable(views: dict[str, dict[str, bool]]) -> list[str]:
    """'label on node N' for each path a node cannot see. `views`: node -> label -> seen."""
    return [f"{label} on node {node}" for node, seen in sorted(views.items())
            for label, ok in sorted(seen.items()) if not ok]


def check_shared_paths(spec, model_ref: str, timeout_s: float = 120) -> None:
    """Refuse local paths that some alive node of the cluster cannot see. No-op on one node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    paths = local_paths(spec, model_ref)
    if len(nodes) < 2 or not paths:
        return
    # the output folder may not exist yet: make it, and a probe file each node must see
    os.makedirs(spec.output, exist_ok=True)
    probe = os.path.join(spec.output, f"{PROBE}{uuid.uuid4().hex[:8]}")
    open(probe, "w").close()
    targets = {**paths, "output": probe}
    try:
        see = ray.remote(num_cpus=0, max_retries=0)(_sees)
        refs = {n["NodeID"][:8]: see.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(targets) for n in nodes}
        views = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s)))
    finally:
        os.unlink(probe)
    missing = unreachable(views)
    if missing:
        raise JobError(
            f"this cluster has {len(nodes)} nodes, and not all of them can see the job's local "
            f"paths ({'; '.join(missing)}). Every node reads the input and writes the output: "
            f"use object storage (s3://..., gs://...) or a folder mounted on every node at "
            f"the same path; a local model folder must be on every node too (or use a hub id)")


def _sees(targets: dict[str, str]) -> dict[str, bool]:
    return {label: os.path.exists(path) for label, path in targets.items()}


def _existing_part(path: str) -> str:
    """A glob's folder part (what must exist on every node); other paths unchanged."""
    if any(c in path for c in "*?["):
        head = path
        while any(c in head for c in "*?["):
            head = os.path.dirname(head)
        return head
    return path
