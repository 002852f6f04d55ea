"""Where inference runs: GPU or CPU, and how many actors, decided against the cluster as it is
now *and* as its autoscaler can grow it.

`resolve_placement` is pure: it takes the job's `resources` and a `ClusterView` (resources of
the alive nodes, plus the node types the autoscaler can add) and returns a `Placement`, or
raises JobError before any work for a placement the cluster can never hold. `read_cluster_view`
builds the view from a connected Ray (jobs/cluster/cluster_view.py does the reading).

Rules
- `num_gpus: auto` = 1 GPU per actor when the cluster has a GPU now or has a node type that
  provides one (a CPU head with GPU workers from zero), else 0 (CPU).
- `concurrency` is a number (fixed pool), a range {min, max} (elastic pool: Ray Data adds
  actors while work queues, and the cluster autoscaler adds nodes to hold them), or `auto`:
  - on a cluster that can grow: from 1 to as many actors as the reachable cluster holds (one
    per GPU; on CPU, one single-threaded actor per core, at most MAX_AUTO_CPU_ACTORS per node,
    leaving room for the read/tokenize tasks);
  - on a fixed cluster: as many as it holds now, a fixed pool (the behaviour of earlier
    versions).
- A pool whose maximum the cluster can never hold (more GPU actors than GPUs it can reach;
  CPU actors that would reserve every CPU, so read and tokenize tasks could never run) is
  refused with the reachable figure in the message.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from corpusmill.errors import JobError

TASK_CPUS = 0.25  # CPUs Ray reserves per read/tokenize/postprocess/write task
MAX_AUTO_CPU_ACTORS = 8  # per node, `concurrency: auto` on CPU: each actor holds a model copy
UNLIMITED = -1  # a node type's max_workers when the autoscaler sets no limit


@dataclass(frozen=True)
class NodeType:
    """A kind of node the cluster autoscaler can launch (the head's own type excluded)."""
    name: str
    cpus: float
    gpus: float
    max_workers: int        # UNLIMITED (-1) for no limit
    min_workers: int = 0

    @property
    def can_grow(self) -> bool:
        return self.max_workers == UNLIMITED or self.max_workers > self.min_workers


@dataclass(frozen=True)
class NodeNow:
    """An alive node and what it offers Ray."""
    node_id: str
    cpus: float
    gpus: float
    is_head: bool = False


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[NodeNow, ...]                  # alive nodes
    node_types: tuple[NodeType, ...] = ()       # what the autoscaler can add
    max_workers: int | None = None              # the autoscaler's cap on worker nodes, if any
    source: str = "no autoscaler"               # where node_types came from (for the summary)

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.nodes)

    @property
    def autoscaling(self) -> bool:
        return any(t.can_grow for t in self.node_types)

    def reachable_nodes(self) -> list[tuple[float, float]]:
        """(cpus, gpus) of every node the cluster can have at once: the head (and any node not
        launched by the autoscaler) as it is now, plus each node type at its maximum count.
        With an unlimited type, `math.inf` nodes of it are represented by one entry with
        infinite resources."""
        if not self.autoscaling:
            return [(n.cpus, n.gpus) for n in self.nodes]
        fixed = [(n.cpus, n.gpus) for n in self.nodes if n.is_head]
        grown = []
        for t in self.node_types:
            count = math.inf if t.max_workers == UNLIMITED else t.max_workers
            if self.max_workers is not None:
                count = min(count, self.max_workers)
            if count == math.inf:
                grown.append((math.inf if t.cpus else 0.0, math.inf if t.gpus else 0.0))
            else:
                grown += [(t.cpus, t.gpus)] * int(count)
        # nodes started by hand alongside the autoscaler's stay reachable too
        reachable = fixed + grown
        if sum(c for c, _ in reachable) < self.cpus or sum(g for _, g in reachable) < self.gpus:
            return [(n.cpus, n.gpus) for n in self.nodes]
        return reachable

    @property
    def reachable_gpus(self) -> float:
        return sum(g for _, g in self.reachable_nodes())


@dataclass(frozen=True)
class Placement:
    num_gpus: float       # per inference actor
    min_actors: int       # the pool's size at start (and its floor)
    max_actors: int       # the pool's ceiling (== min_actors: a fixed pool)
    torch_threads: int    # per CPU inference actor
    reason: str = ""      # one line: what was decided and why
    notes: tuple[str, ...] = field(default=())
    single_node: bool = False  # the pool's actors all run on the driver's node
    cpus_per_actor: float | None = None  # CPUs Ray reserves per actor (None: the spec's)

    @property
    def elastic(self) -> bool:
        return self.max_actors > self.min_actors

    @property
    def device(self) -> str:
        return "gpu" if self.num_gpus else "cpu"


def resolve_placement(resources, cluster: ClusterView, node_cores: int,
                      reserved_cpus: float = 0.0) -> Placement:
    """Decide GPU/CPU and the actor pool for `resources` (the spec's Resources) on `cluster`.
    `reserved_cpus`: CPUs Ray Data's own actors will hold (a resumed run's checkpoint
    filter). `node_cores`: cores of the driver's node (torch threads of a fixed CPU pool)."""
    if resources.num_gpus == "auto":
        num_gpus = 1.0 if cluster.gpus >= 1 or cluster.reachable_gpus >= 1 else 0.0
    else:
        num_gpus = float(resources.num_gpus)
    per_actor_cpus = resources.cpus_per_actor
    reachable = cluster.reachable_nodes()
    capacity = _actor_capacity(reachable, num_gpus, per_actor_cpus, reserved_cpus)
    now = _actor_capacity([(n.cpus, n.gpus) for n in cluster.nodes], num_gpus, per_actor_cpus,
                          reserved_cpus)

    concurrency = resources.concurrency
    if concurrency == "auto":
        if cluster.autoscaling:
            low, high = 1, max(1, capacity)
        else:
            low = high = max(1, now)
        if high != math.inf:
            low, high = int(low), int(high)
    elif isinstance(concurrency, int):
        low = high = concurrency
    else:
        low, high = concurrency.min, concurrency.max
    if high == math.inf:
        raise JobError("concurrency: auto on a cluster whose autoscaler has no node limit; set "
                       "resources.concurrency to a number or a range {min: 1, max: N}")
    _refuse_unreachable(high, capacity, num_gpus, per_actor_cpus, cluster, reserved_cpus)

    if resources.torch_threads:
        threads = resources.torch_threads
    elif high == low:   # a fixed pool: the driver's node's cores shared among its actors
        threads = max(1, node_cores // high)
    else:               # an elastic pool: single-threaded actors, one per core
        threads = 1
    kind = f"{num_gpus:g} GPU per actor" if num_gpus else "CPU"
    pool = f"{low} actor(s)" if low == high else f"{low} to {high} actors (elastic)"
    where = (f"; node types from {cluster.source}" if cluster.autoscaling else "")
    return Placement(num_gpus=num_gpus, min_actors=int(low), max_actors=int(high),
                     torch_threads=threads, reason=f"{kind}, {pool}{where}",
                     single_node=len(cluster.nodes) == 1 and not cluster.autoscaling)


def fit_to_work(placement: Placement, resources, rows: int, window_rows: int,
                node_cores: int) -> Placement:
    """`concurrency: auto` starts no more inference actors than the run has blocks of
    `window_rows` rows to give them: a 10-row job loads the model once, not once per core (its
    one actor then gets the driver's node's cores as torch threads)."""
    blocks = max(1, math.ceil(rows / max(1, window_rows)))
    if resources.concurrency != "auto" or placement.max_actors <= blocks:
        return placement
    low = min(placement.min_actors, blocks)
    threads = resources.torch_threads or (max(1, node_cores // blocks) if low == blocks else 1)
    return dataclasses.replace(placement, min_actors=low, max_actors=blocks, torch_threads=threads,
                               reason=f"{placement.reason}; {blocks} actor(s): the work is "
                                      f"{blocks} block(s) of up to {window_rows} rows")


ONNX_THREADS_PER_ACTOR = 4


def group_onnx_actors(placement: Placement, resources, node_cores: int) -> Placement:
    """For the onnxruntime backend, a fixed CPU pool that `concurrency: auto` sized on one node
    becomes fewer actors with more intra-op threads each (up to `ONNX_THREADS_PER_ACTOR`): an
    ONNX Runtime session on 2 threads ran 1.85x its speed on 1 (bench/RESULTS.md), and every
    actor holds its own copy of the graph and its working memory, so 2 cores run best as one
    actor of 2 threads. `node_cores`: the driver's node's cores. An explicit concurrency or
    torch_threads is kept as given."""
    if (placement.num_gpus or placement.elastic or not placement.single_node
            or resources.concurrency != "auto" or resources.torch_threads):
        return placement
    actors = max(1, math.ceil(node_cores / ONNX_THREADS_PER_ACTOR))
    if actors >= placement.min_actors:
        return placement
    threads = max(1, node_cores // actors)
    return dataclasses.replace(
        placement, min_actors=actors, max_actors=actors, torch_threads=threads,
        reason=f"{placement.reason}; onnxruntime: {actors} actor(s) of {threads} threads")


def _actor_capacity(nodes: list[tuple[float, float]], num_gpus: float, cpus_per_actor: float,
                    reserved_cpus: float) -> float:
    """Inference actors `nodes` can hold at once: GPU actors by GPUs (each also takes its
    CPUs); CPU actors one per core, at most MAX_AUTO_CPU_ACTORS a node, leaving TASK_CPUS
    free on the cluster for the read and tokenize tasks."""
    if num_gpus:
        total = 0.0
        for cpus, gpus in nodes:
            by_gpu = gpus // num_gpus if gpus != math.inf else math.inf
            by_cpu = cpus // cpus_per_actor if cpus != math.inf else math.inf
            total += min(by_gpu, by_cpu)
        return total
    total, free = 0.0, -reserved_cpus - TASK_CPUS
    for cpus, _ in nodes:
        if cpus == math.inf:
            return math.inf
        free += cpus
        total += min(MAX_AUTO_CPU_ACTORS, int(cpus))
    return max(0, min(total, int(free // cpus_per_actor)))


def _refuse_unreachable(wanted: int, capacity: float, num_gpus: float, cpus_per_actor: float,
                        cluster: ClusterView, reserved_cpus: float) -> None:
    if num_gpus:
        if wanted * num_gpus <= cluster.reachable_gpus and wanted <= capacity:
            return
        grow = " (now and as the autoscaler can grow it)" if cluster.autoscaling else ""
        raise JobError(
            f"{wanted} inference actor(s) x num_gpus {num_gpus:g} need {wanted * num_gpus:g} "
            f"GPU(s), but this cluster{grow} can hold at most {capacity:g} such actor(s) "
            f"({cluster.reachable_gpus:g} GPU(s)); lower resources.concurrency (or its max), "
            f"or resources.num_gpus")
    reachable_cpus = sum(c for c, _ in cluster.reachable_nodes())
    reserved = wanted * cpus_per_actor
    if reserved <= reachable_cpus - reserved_cpus - TASK_CPUS:
        return
    grow = " (now and as the autoscaler can grow it)" if cluster.autoscaling else ""
    raise JobError(
        f"{wanted} inference actor(s) x cpus_per_actor {cpus_per_actor:g} would reserve "
        f"{reserved:g} of the {reachable_cpus - reserved_cpus:g} CPUs this cluster{grow} "
        f"offers, leaving none for the read and tokenize tasks (the job would wait forever); "
        f"lower resources.concurrency or resources.cpus_per_actor")


def share_placements(resources: list, cluster: ClusterView, node_cores: int,
                     reserved_cpus: float = 0.0) -> list[Placement]:
    """The placements of the actor pools of a job's tasks, which run side by side on the same
    blocks (one task: `resolve_placement`'s). With several:
    - each pool's CPU capacity leaves room for one actor of every other pool;
    - `num_gpus: auto` on a cluster with GPUs gives each task's actors 1/n of a GPU, so n small
      models share each GPU instead of waiting for one another's;
    - `concurrency: auto` pools get their share of what the cluster holds (at least one actor
      each), and CPU actors their share of the node's cores as threads;
    - GPU pools whose minimums together need more GPUs than the cluster can reach are refused
      (naming the tasks' share), before any work."""
    count = len(resources)
    if count == 1:
        return [resolve_placement(resources[0], cluster, node_cores, reserved_cpus)]
    gpus = cluster.gpus >= 1 or cluster.reachable_gpus >= 1
    # the CPUs Ray reserves per actor, where the spec leaves them: the one-task default shared
    # among the pools (on 2 cores, 3 pools of 0.5 plus a resumed run's 1-CPU checkpoint filter
    # would leave the read and write tasks no CPU)
    resources = [r if "cpus_per_actor" in r.model_fields_set else
                 r.model_copy(update={"cpus_per_actor": round(r.cpus_per_actor / count, 3)})
                 for r in resources]
    placements = []
    for index, wanted in enumerate(resources):
        others = sum(r.cpus_per_actor for i, r in enumerate(resources) if i != index)
        if wanted.num_gpus == "auto":
            wanted = wanted.model_copy(update={"num_gpus": round(1 / count, 4) if gpus else 0.0})
        placement = resolve_placement(wanted, cluster, max(1, node_cores // count),
                                      reserved_cpus + others)
        if wanted.concurrency == "auto":
            share = max(1, placement.max_actors // count)
            low = min(placement.min_actors, share)
            threads = wanted.torch_threads or (
                max(1, node_cores // count // share) if low == share else 1)
            placement = dataclasses.replace(
                placement, min_actors=low, max_actors=share, torch_threads=threads,
                reason=f"{placement.reason}; 1/{count} of the cluster: {share} actor(s)")
        placements.append(dataclasses.replace(placement, cpus_per_actor=wanted.cpus_per_actor))
    needed = sum(p.min_actors * p.num_gpus for p in placements)
    if needed > cluster.reachable_gpus + 1e-9 and any(p.num_gpus for p in placements):
        raise JobError(f"the {count} tasks' inference pools need {needed:g} GPU(s) at once "
                       f"(their minimum actors x num_gpus), but this cluster can reach "
                       f"{cluster.reachable_gpus:g}; give each task a share, e.g. "
                       f"resources: {{num_gpus: {round(1 / count, 2):g}}}, or fewer actors")
    return placements
