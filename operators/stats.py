"""Run statistics: what each operator did, gathered while the job runs.

Every operator reports, per block it handles, to one small Ray actor of the run (`RunStats`,
named after the run id, no CPU reserved). The driver reads its snapshot for the progress
display and writes the final one into the manifest (`stats`, `placement`; see
docs/architecture.md). Reporting is fire-and-forget: a run whose stats actor is missing (an
operator called outside a run, in tests) reports nothing and behaves the same.

Stages and what they report
    read         rows, seconds
    tokenize     rows, seconds, tokens (a window's tokens, summed)
    inference    rows, seconds, tokens, padded_tokens, windows; per actor: node, device
    postprocess  rows, seconds, rows_out, errors, skipped
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import defaultdict

STAGES = ("read", "tokenize", "inference", "postprocess")
NAME_PREFIX = "corpusmill-stats-"


class RunStats:
    """The run's tallies (a Ray actor: `ray.remote(num_cpus=0)(RunStats)`)."""

    def __init__(self):
        self.started = time.time()
        self.stages: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.actors: dict[str, dict] = {}
        self.first_block_at: float | None = None  # seconds: the first inference block done
        self.first_output_at: float | None = None  # epoch seconds: the first block to the sink
        self.corrupt: list[dict] = []  # row groups skipped as unreadable (skip_corrupt_files)

    def add(self, stage: str, actor: str | None = None, node: str | None = None,
            device: str | None = None, **counts: float) -> None:
        totals = self.stages[stage]
        totals["blocks"] += 1
        if stage == "postprocess" and self.first_output_at is None:
            self.first_output_at = time.time()
        for key, value in counts.items():
            totals[key] += value
        if actor is not None:
            now = time.time() - self.started
            if stage == "inference" and self.first_block_at is None:
                self.first_block_at = now
            seen = self.actors.setdefault(actor, {"actor": actor, "node_id": node,
                                                  "device": device, "rows": 0, "seconds": 0.0,
                                                  "first": now, "last": now})
            seen["rows"] += counts.get("rows", 0)
            seen["seconds"] += counts.get("seconds", 0.0)
            seen["last"] = now

    def actor_ready(self, actor: str, node: str, device: str, task: str = "") -> None:
        """An inference actor has loaded its model (`task`: its task's name in a job with
        several)."""
        now = time.time() - self.started
        seen = self.actors.setdefault(actor, {"actor": actor, "node_id": node, "device": device,
                                              "rows": 0, "seconds": 0.0, "first": now,
                                              "last": now})
        if task:
            seen["task"] = task

    def skipped_corrupt(self, file: str, group: int, rows: int, error: str) -> None:
        part = {"file": file, "row_group": group, "rows": rows, "error": error}
        if part not in self.corrupt:  # a retried read task reports the same part again
            self.corrupt.append(part)

    def snapshot(self) -> dict:
        return {"stages": {stage: dict(values) for stage, values in self.stages.items()},
                "actors": [dict(a) for a in self.actors.values()],
                "first_block_at": self.first_block_at, "first_output_at": self.first_output_at,
                "corrupt": list(self.corrupt)}


def peak_concurrent(actors: list[dict]) -> int:
    """Most actors alive at once, from each actor's first and last report (seconds)."""
    events = sorted([(a["first"], 1) for a in actors] + [(a["last"], -1) for a in actors],
                    key=lambda e: (e[0], -e[1]))
    peak = alive = 0
    for _, step in events:
        alive += step
        peak = max(peak, alive)
    return peak


def stats_name(run_id: str) -> str:
    return f"{NAME_PREFIX}{run_id}"


# runs in this process (jobs/in_process.py): name -> their RunStats, used instead of an actor
_IN_PROCESS: dict[str, RunStats] = {}


@contextlib.contextmanager
def local_stats(name: str, stats: RunStats):
    """Within the block, operators reporting to `name` add to `stats` in this process."""
    _IN_PROCESS[name] = stats
    try:
        yield stats
    finally:
        _IN_PROCESS.pop(name, None)


@functools.lru_cache(maxsize=8)
def _handle(name: str):
    import ray

    try:
        return ray.get_actor(name)
    except Exception:  # noqa: BLE001 - no such actor (not in a run, or it is gone)
        return None


def report(name: str, stage: str, **fields) -> None:
    """Send one block's figures to the run's stats actor; never fails the caller."""
    if not name:
        return
    if name in _IN_PROCESS:
        _IN_PROCESS[name].add(stage, **fields)
        return
    handle = _handle(name)
    if handle is None:
        return
    try:
        handle.add.remote(stage, **fields)
    except Exception:  # noqa: BLE001 - statistics must never fail a block
        _handle.cache_clear()


def report_corrupt(name: str, file: str, group: int, rows: int, error: str) -> None:
    """A row group skipped as unreadable (its rows are counted as skipped in the summary)."""
    if name in _IN_PROCESS:
        _IN_PROCESS[name].skipped_corrupt(file, group, rows, error)
        return
    handle = _handle(name) if name else None
    if handle is not None:
        try:
            handle.skipped_corrupt.remote(file, group, rows, error)
        except Exception:  # noqa: BLE001
            _handle.cache_clear()


def corrupt_parts(snapshot: dict) -> tuple[str, ...]:
    """'part-3.parquet (row group 2: 100 rows)' for each row group a run skipped as corrupt."""
    return tuple(f"{p['file']} (row group {p['row_group']}: {p['rows']} rows)"
                 for p in sorted(snapshot.get("corrupt", []),
                                 key=lambda p: (p["file"], p["row_group"])))


def announce_actor(name: str, device: str, task: str = "") -> str:
    """Register an inference actor (once its model is loaded); returns its key 'pid@node'.
    `task`: the name of the task it runs, in a job with several."""
    node = node_id()
    key = f"{os.getpid()}@{node[:12]}"
    if name in _IN_PROCESS:
        _IN_PROCESS[name].actor_ready(key, node, device, task)
        return key
    handle = _handle(name) if name else None
    if handle is not None:
        try:
            handle.actor_ready.remote(key, node, device, task)
        except Exception:  # noqa: BLE001
            _handle.cache_clear()
    return key


def node_id() -> str:
    import sys

    ray = sys.modules.get("ray")  # not imported: not in a Ray worker or driver
    return (ray.get_runtime_context().get_node_id()
            if ray is not None and ray.is_initialized() else "local")


class Timer:
    """`with Timer() as t: ...; t.seconds`"""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
