"""How `concurrency: auto` and friends resolve against a cluster: pure, no Ray."""
from __future__ import annotations

import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.run import MAX_AUTO_CPU_ACTORS, resolve_placement
from corpusmill.spec import Resources


def test_cpu_machine_gets_one_single_threaded_actor_per_core():
    placed = resolve_placement(Resources(), cluster_cpus=2, cluster_gpus=0, node_cores=2)
    assert (placed.num_gpus, placed.concurrency, placed.torch_threads) == (0.0, 2, 1)


def test_one_core_still_gets_an_actor_and_room_for_tasks():
    placed = resolve_placement(Resources(), cluster_cpus=1, cluster_gpus=0, node_cores=1)
    assert (placed.concurrency, placed.torch_threads) == (1, 1)


def test_big_cpu_cluster_is_capped_and_threads_share_the_node():
    placed = resolve_placement(Resources(), cluster_cpus=64, cluster_gpus=0, node_cores=16)
    assert placed.concurrency == MAX_AUTO_CPU_ACTORS
    assert placed.torch_threads == 16 // MAX_AUTO_CPU_ACTORS


def test_gpu_cluster_gets_one_actor_per_gpu():
    placed = resolve_placement(Resources(), cluster_cpus=32, cluster_gpus=4, node_cores=8)
    assert (placed.num_gpus, placed.concurrency) == (1.0, 4)


def test_explicit_settings_win():
    placed = resolve_placement(Resources(concurrency=1, torch_threads=3), cluster_cpus=8,
                               cluster_gpus=0, node_cores=8)
    assert (placed.concurrency, placed.torch_threads) == (1, 3)


def test_actors_holding_every_cpu_are_refused_with_the_fix():
    with pytest.raises(JobError, match=r"would reserve 4 of the cluster's 2 CPUs.*"
                                       r"lower resources.concurrency or resources.cpus_per_actor"):
        resolve_placement(Resources(concurrency=4, cpus_per_actor=1), cluster_cpus=2,
                          cluster_gpus=0, node_cores=2)
