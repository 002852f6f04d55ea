"""What a run records about itself: the `placement` and `stats` sections of the manifest
(`<output>/.corpusmill/manifest.json`), built from the decided placement, the run's statistics
(operators/stats.py) and Ray's node table; and the summary line that says where it ran.

placement: device, GPUs per actor, dtype, backend, the decision (`decided`), actors
    {min, max, start, peak}, nodes [{node_id, host, rows, actors, gpus}], torch_threads,
    actor_devices (what torch used inside the actors: `cuda`, or `cpu` when it saw no GPU).
stats: started/finished, stages {read, tokenize, inference, postprocess: {rows, seconds (busy
    time summed over workers), blocks, and the stage's own counts (tokens; postprocess:
    rows_out, errors, skipped)}, write: {rows, files}; with several tasks also
    `inference:<name>` per task, and tokenize's rows count each tokenization: rows x the
    tokenizations that were not shared}, tokens {tokens, padded_tokens,
    windows}, actors [{actor, node_id, rows, seconds}], timeline [[seconds, rows done]],
    files_written (data files this run added, relative to the output folder), driver
    {peak_rss_mb} (the peak resident memory of the process that ran the job, so far).
"""
from __future__ import annotations

from collections import Counter

from corpusmill.jobs.cluster.placement import Placement
from corpusmill.operators.stats import STAGES, peak_concurrent


def placement_record(placement: Placement, plan, snapshot: dict, nodes: list[dict],
                     task: str | None = None) -> dict:
    """`nodes`: Ray's node table (`ray.nodes()`), dead nodes included, for host names;
    `task`: only that task's actors, in a job with several."""
    actors = [a for a in snapshot.get("actors", []) if task is None or a.get("task") == task]
    hosts = {n["NodeID"]: n.get("NodeManagerAddress") or n.get("NodeName") for n in nodes}
    gpus = {n["NodeID"]: n.get("Resources", {}).get("GPU", 0) for n in nodes}
    per_node: dict[str, dict] = {}
    for actor in actors:
        node = actor.get("node_id") or "?"
        entry = per_node.setdefault(node, {"node_id": node, "host": hosts.get(node),
                                           "rows": 0, "actors": 0, "gpus": gpus.get(node, 0)})
        entry["rows"] += int(actor.get("rows", 0))
        entry["actors"] += 1
    first_block = snapshot.get("first_block_at")
    started = sum(1 for a in actors if first_block is None or a["first"] <= first_block)
    return {
        "device": placement.device,
        "num_gpus_per_actor": placement.num_gpus,
        "dtype": plan.spec.resources.dtype,
        "backend": getattr(plan, "backend", "torch"),
        "graph": getattr(getattr(plan, "graph", None), "folder", None),  # onnxruntime's graph
        "int8_agreement": getattr(getattr(plan, "graph", None), "agreement", None),
        "decided": placement.reason,
        "actors": {"min": placement.min_actors, "max": placement.max_actors,
                   "start": started if actors else 0, "peak": peak_concurrent(actors)},
        "nodes": sorted(per_node.values(), key=lambda n: -n["rows"]),
        "torch_threads": placement.torch_threads,
        "actor_devices": dict(Counter(a.get("device") or "?" for a in actors)),
    }


def stats_record(snapshot: dict, timeline: list, started: str, finished: str,
                 files_written: list[str], rows_written: int,
                 process_started: float | None = None) -> dict:
    """The manifest's `stats`. `process_started` (epoch seconds): when the run began (the
    command's process, from the CLI), for `seconds_to_first_output`: from it to the first
    block handed to the Parquet sink (its postprocess done; the write follows in the same
    task)."""
    stages = {}
    # a job with several tasks also times each task's inference (`inference:<name>`)
    per_task = [s for s in snapshot.get("stages", {}) if s.startswith("inference:")]
    for stage in [*STAGES, *per_task]:
        values = snapshot.get("stages", {}).get(stage)
        if values:  # rows, seconds, blocks, and what the stage counts besides (errors, ...)
            stages[stage] = {key: round(value, 3) if key == "seconds" else int(value)
                             for key, value in values.items()}
    stages["write"] = {"rows": rows_written, "files": len(files_written)}
    inference = snapshot.get("stages", {}).get("inference", {})
    first = snapshot.get("first_output_at")
    return {
        "started": started, "finished": finished, "stages": stages,
        "seconds_to_first_output": (round(first - process_started, 2)
                                    if first is not None and process_started else None),
        "tokens": {"tokens": int(inference.get("tokens", 0)),
                   "padded_tokens": int(inference.get("padded_tokens", 0)),
                   "windows": int(inference.get("windows", 0))},
        "actors": [{"actor": a["actor"], "node_id": a.get("node_id"), "rows": int(a["rows"]),
                    "seconds": round(a["seconds"], 3), **({"task": a["task"]} if "task" in a
                                                          else {})}
                   for a in snapshot.get("actors", [])],
        "timeline": [list(point) for point in timeline],
        "files_written": files_written,
        "driver": {"peak_rss_mb": driver_peak_rss_mb()},
    }


def driver_peak_rss_mb() -> float | None:
    """This process's peak resident memory (getrusage; kilobytes on Linux, bytes on macOS)."""
    try:
        import resource
        import sys
    except ImportError:  # not on this platform
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def placement_line(record: dict) -> str:
    """'ran on 2 GPU node(s) with 2 actor(s) at peak (1 at start, elastic 1-2): 10.0.0.3
    1,650 rows, 10.0.0.4 1,350 rows' — where a run ran, for the summary."""
    nodes = record.get("nodes", [])
    if record.get("executor") == "process":
        host = nodes[0].get("host") if nodes else None
        return (f"ran in this process" + (f" on {host}" if host else "") + f" with "
                f"{record.get('torch_threads')} torch thread(s), no Ray "
                f"({record.get('executor_reason')})")
    actors = record.get("actors", {})
    kind = "GPU" if record.get("device") == "gpu" else "CPU"
    pool = (f"elastic {actors.get('min')}-{actors.get('max')}"
            if actors.get("max") != actors.get("min") else "fixed pool")
    hosts = [n.get("host") for n in nodes]
    shared = len(set(hosts)) < len(hosts)  # nodes on one machine (a local test cluster)
    where = ", ".join(f"{_node_name(n, shared)} {n['rows']:,} rows" for n in nodes)
    line = (f"ran on {len(nodes)} {kind} node(s) with {actors.get('peak', 0)} actor(s) at peak "
            f"({actors.get('start', 0)} at start, {pool})" + (f": {where}" if where else ""))
    devices = record.get("actor_devices", {})
    if kind == "GPU" and devices and "cuda" not in devices:
        line += " (GPUs were reserved, but torch saw no CUDA in the actors: they ran on CPU)"
    return line


def _node_name(node: dict, by_id: bool) -> str:
    """The node's host, with the end of its id where several share a host."""
    node_id = str(node.get("node_id") or "?")
    host = node.get("host")
    if host and not by_id:
        return host
    return f"{host or 'node'}/{node_id[-6:]}"
