"""Placement: GPU or CPU and the actor pool, against a cluster as it is and as its autoscaler can
grow it. Pure: no Ray."""
from __future__ import annotations

import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.cluster.cluster_view import (
    node_types_from_autoscaling_config, node_types_from_cluster_config,
)
from corpusmill.jobs.cluster.placement import (
    MAX_AUTO_CPU_ACTORS, UNLIMITED, ClusterView, NodeNow, NodeType, group_onnx_actors,
    resolve_placement, share_placements,
)
from corpusmill.spec import ActorRange, Resources

CPU_HEAD = NodeNow("head", cpus=1, gpus=0, is_head=True)
GPU_WORKERS = NodeType("gpu_worker", cpus=1, gpus=1, max_workers=2)


def machine(cpus: float, gpus: float = 0) -> ClusterView:
    return ClusterView(nodes=(NodeNow("head", cpus=cpus, gpus=gpus, is_head=True),))


def test_cpu_machine_gets_one_single_threaded_actor_per_core():
    placed = resolve_placement(Resources(), machine(2), node_cores=2)
    assert (placed.num_gpus, placed.min_actors, placed.max_actors, placed.torch_threads) == \
        (0.0, 2, 2, 1)
    assert not placed.elastic and placed.device == "cpu"


@pytest.mark.parametrize("cores,actors,threads", [(2, 1, 2), (4, 1, 4), (8, 2, 4), (12, 3, 4),
                                                  (1, 1, 1)])
def test_onnxruntime_runs_fewer_actors_with_more_threads_on_one_machine(cores, actors, threads):
    placed = group_onnx_actors(resolve_placement(Resources(), machine(cores), node_cores=cores),
                               Resources(), node_cores=cores)
    assert (placed.min_actors, placed.max_actors, placed.torch_threads) == \
        (actors, actors, threads)


@pytest.mark.parametrize("resources", [Resources(concurrency=2), Resources(torch_threads=1)])
def test_onnxruntime_keeps_an_explicit_pool(resources):
    placed = resolve_placement(resources, machine(2), node_cores=2)
    assert group_onnx_actors(placed, resources, node_cores=2) == placed


def test_onnxruntime_grouping_leaves_clusters_and_gpus_alone():
    two_nodes = ClusterView(nodes=(NodeNow("head", cpus=2, gpus=0, is_head=True),
                                   NodeNow("worker", cpus=2, gpus=0, is_head=False)))
    placed = resolve_placement(Resources(), two_nodes, node_cores=2)
    assert group_onnx_actors(placed, Resources(), node_cores=2) == placed
    gpu = resolve_placement(Resources(), machine(2, gpus=1), node_cores=2)
    assert group_onnx_actors(gpu, Resources(), node_cores=2) == gpu


def test_one_core_still_gets_an_actor_and_room_for_tasks():
    placed = resolve_placement(Resources(), machine(1), node_cores=1)
    assert (placed.max_actors, placed.torch_threads) == (1, 1)


def test_a_resumed_run_leaves_the_checkpoint_filter_its_cpu():
    placed = resolve_placement(Resources(), machine(2), node_cores=2, reserved_cpus=1.0)
    assert placed.max_actors == 1


def test_big_cpu_node_is_capped_and_threads_share_the_node():
    placed = resolve_placement(Resources(), machine(16), node_cores=16)
    assert placed.max_actors == MAX_AUTO_CPU_ACTORS
    assert placed.torch_threads == 16 // MAX_AUTO_CPU_ACTORS


def test_gpus_live_now_get_one_actor_per_gpu():
    cluster = ClusterView(nodes=(NodeNow("head", 8, 0, True), NodeNow("w1", 8, 2),
                                 NodeNow("w2", 8, 2)))
    placed = resolve_placement(Resources(), cluster, node_cores=8)
    assert (placed.num_gpus, placed.min_actors, placed.max_actors) == (1.0, 4, 4)
    assert placed.device == "gpu"


def test_gpu_node_types_the_autoscaler_can_add_mean_gpu_from_zero():
    """A CPU head with GPU workers from zero (cluster.yaml): no GPU exists yet, but the job
    asks for GPUs, and the pool may grow to every GPU the autoscaler can add."""
    cluster = ClusterView(nodes=(CPU_HEAD,), node_types=(GPU_WORKERS,), source="test")
    placed = resolve_placement(Resources(), cluster, node_cores=1)
    assert (placed.num_gpus, placed.min_actors, placed.max_actors) == (1.0, 1, 2)
    assert placed.elastic and "1 to 2 actors" in placed.reason


def test_autoscaling_cpu_cluster_grows_one_actor_per_core_per_node():
    workers = NodeType("cpu_worker", cpus=4, gpus=0, max_workers=3)
    cluster = ClusterView(nodes=(NodeNow("head", 2, 0, True),), node_types=(workers,))
    placed = resolve_placement(Resources(), cluster, node_cores=2)
    assert (placed.num_gpus, placed.min_actors, placed.max_actors) == (0.0, 1, 2 + 3 * 4)
    assert placed.torch_threads == 1


def test_global_max_workers_caps_what_the_node_types_allow():
    many = NodeType("gpu_worker", cpus=8, gpus=1, max_workers=10)
    cluster = ClusterView(nodes=(CPU_HEAD,), node_types=(many,), max_workers=3)
    assert resolve_placement(Resources(), cluster, node_cores=1).max_actors == 3


def test_cpu_only_cluster_without_autoscaler_is_a_fixed_pool():
    cluster = ClusterView(nodes=(NodeNow("head", 4, 0, True), NodeNow("w", 4, 0)))
    placed = resolve_placement(Resources(), cluster, node_cores=4)
    assert (placed.num_gpus, placed.min_actors, placed.max_actors) == (0.0, 8, 8)


def test_an_explicit_range_is_an_elastic_pool():
    cluster = ClusterView(nodes=(CPU_HEAD,), node_types=(GPU_WORKERS,))
    placed = resolve_placement(Resources(concurrency=ActorRange(min=1, max=2)), cluster, 1)
    assert (placed.min_actors, placed.max_actors, placed.elastic) == (1, 2, True)


def test_explicit_settings_win():
    placed = resolve_placement(Resources(concurrency=1, torch_threads=3), machine(8), 8)
    assert (placed.min_actors, placed.max_actors, placed.torch_threads) == (1, 1, 3)


def test_a_range_larger_than_the_cluster_can_ever_reach_is_refused_before_work():
    cluster = ClusterView(nodes=(CPU_HEAD,), node_types=(GPU_WORKERS,))
    with pytest.raises(JobError, match=r"8 inference actor\(s\) x num_gpus 1 need 8 GPU\(s\), "
                                       r"but this cluster \(now and as the autoscaler can grow "
                                       r"it\) can hold at most 2.*lower resources.concurrency"):
        resolve_placement(Resources(concurrency=ActorRange(min=1, max=8)), cluster, 1)


def test_gpus_asked_of_a_cluster_without_any_are_refused():
    with pytest.raises(JobError, match=r"need 1 GPU\(s\), but this cluster can hold at most 0"):
        resolve_placement(Resources(num_gpus=1), machine(4), node_cores=4)


def test_actors_holding_every_cpu_are_refused_with_the_fix():
    with pytest.raises(JobError, match=r"would reserve 4 of the 2 CPUs this cluster offers.*"
                                       r"lower resources.concurrency or resources.cpus_per_actor"):
        resolve_placement(Resources(concurrency=4, cpus_per_actor=1), machine(2), node_cores=2)


def test_unlimited_node_types_need_an_explicit_pool_size():
    endless = NodeType("gpu_worker", cpus=8, gpus=1, max_workers=UNLIMITED)
    cluster = ClusterView(nodes=(CPU_HEAD,), node_types=(endless,))
    with pytest.raises(JobError, match="no node limit"):
        resolve_placement(Resources(), cluster, node_cores=1)
    placed = resolve_placement(Resources(concurrency=ActorRange(min=1, max=16)), cluster, 1)
    assert placed.max_actors == 16


def test_node_types_from_an_autoscaler_config():
    config = {"max_workers": 2, "head_node_type": "ray.head.default",
              "available_node_types": {
                  "ray.head.default": {"resources": {"CPU": 1}, "max_workers": 0},
                  "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "min_workers": 0,
                                 "max_workers": 2},
                  "off": {"resources": {"CPU": 8}, "max_workers": 0}}}
    types, cap = node_types_from_autoscaling_config(config)
    assert types == [NodeType("gpu_worker", cpus=1.0, gpus=1.0, max_workers=2)]
    assert cap == 2


def test_node_types_from_the_gcs_cluster_config():
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    group = config.node_group_configs.add()
    group.name, group.min_count, group.max_count = "gpu-group", 0, 4
    group.resources["CPU"], group.resources["GPU"] = 8, 1
    empty = config.node_group_configs.add()
    empty.name, empty.max_count = "unused", 0
    assert node_types_from_cluster_config(config) == [
        NodeType("gpu-group", cpus=8.0, gpus=1.0, max_workers=4, min_workers=0)]


def test_concurrency_range_in_a_spec_is_validated():
    from corpusmill.errors import JobError as SpecError
    from corpusmill.spec import parse_spec

    base = {"task": "text-classification", "model": "m", "input": "/in", "output": "/out"}
    spec = parse_spec({**base, "resources": {"concurrency": {"min": 1, "max": 4}}})
    assert spec.resources.concurrency == ActorRange(min=1, max=4)
    with pytest.raises(SpecError, match=r"concurrency range needs 1 <= min <= max, got min 5, max 4"):
        parse_spec({**base, "resources": {"concurrency": {"min": 5, "max": 4}}})


def test_several_tasks_share_a_cpu_machine_one_single_threaded_actor_each():
    placed = share_placements([Resources()] * 3, machine(2), node_cores=2, reserved_cpus=1.0)
    assert [(p.num_gpus, p.min_actors, p.max_actors, p.torch_threads) for p in placed] == \
        [(0.0, 1, 1, 1)] * 3
    # the default reservation is shared: with a resumed run's 1-CPU checkpoint filter the
    # three pools still leave the read and write tasks room
    assert [p.cpus_per_actor for p in placed] == [pytest.approx(0.5 / 3, abs=1e-3)] * 3
    explicit = share_placements([Resources(cpus_per_actor=0.25), Resources()], machine(8), 8)
    assert [p.cpus_per_actor for p in explicit] == [0.25, 0.25]
    assert [p.max_actors for p in explicit] == [4, 4]  # each half of the 8 cores


def test_several_tasks_on_one_gpu_share_it_and_explicit_whole_gpus_are_refused():
    placed = share_placements([Resources()] * 2, machine(8, gpus=1), node_cores=8)
    assert [(p.num_gpus, p.min_actors, p.max_actors) for p in placed] == [(0.5, 1, 1)] * 2
    with pytest.raises(JobError, match=r"need 2 GPU\(s\) at once .* resources: \{num_gpus: 0.5\}"):
        share_placements([Resources(num_gpus=1)] * 2, machine(8, gpus=1), node_cores=8)
    one = share_placements([Resources()], machine(2), node_cores=2)
    assert one == [resolve_placement(Resources(), machine(2), node_cores=2)]
