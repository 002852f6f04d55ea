"""The private Ray APIs corpusmill uses (corpusmill/ray_internals.py), one test each: a Ray
release that renames or reshapes one fails here, naming it, before any job misbehaves.

Each test also states what to do then. All but two read Ray's code without
starting Ray; the last two need the session's Ray (a Dataset, the GCS)."""
from __future__ import annotations

import inspect
import subprocess
import sys
import time

from corpusmill import ray_internals


def test_head_resource_is_rays_own_head_marker():
    """If this fails: pin the stats actor to the head another way (ray.nodes()' new field)."""
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME

    assert HEAD_NODE_RESOURCE_NAME == ray_internals.HEAD_RESOURCE


def test_gcs_cluster_config_has_the_shape_cluster_view_reads():
    """If this fails: read the autoscaler's node groups from Ray's new API."""
    import ray._private.state
    from ray.core.generated import autoscaler_pb2

    from corpusmill.jobs.cluster.cluster_view import node_types_from_cluster_config

    state = ray._private.state.state
    assert isinstance(state, ray._private.state.GlobalState)
    assert callable(state.get_cluster_config)
    assert not inspect.signature(state.get_cluster_config).parameters
    config = autoscaler_pb2.ClusterConfig()
    group = config.node_group_configs.add(name="gpu", min_count=1, max_count=3)
    group.resources["CPU"], group.resources["GPU"] = 4, 1
    config.node_group_configs.add(name="head", max_count=0)
    [node_type] = node_types_from_cluster_config(config)
    assert (node_type.name, node_type.cpus, node_type.gpus) == ("gpu", 4.0, 1.0)
    assert (node_type.min_workers, node_type.max_workers) == (1, 3)


def test_autoscaler_process_still_takes_the_flags_we_read(tmp_path):
    """If this fails: Ray's autoscaler moved or renamed its script or flags; follow it in
    ray_internals.running_autoscaler_config."""
    import ray._private.services
    import ray.autoscaler._private.monitor as monitor

    assert monitor.__file__.endswith(ray_internals.AUTOSCALER_SCRIPT)
    source = inspect.getsource(monitor)
    assert '"--gcs-address"' in source and '"--autoscaling-config"' in source
    # `ray start --autoscaling-config` hands the path on in this form
    assert "--autoscaling-config=" in inspect.getsource(ray._private.services)

    # and a process of that shape, serving "our" GCS port, is found (one this test starts)
    script = tmp_path / ray_internals.AUTOSCALER_SCRIPT
    script.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script), "--gcs-address=127.0.0.1:1",
                             "--autoscaling-config=cfg.yaml"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (found := ray_internals.running_autoscaler_config("1")) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert found == str(tmp_path / "cfg.yaml")
        assert ray_internals.running_autoscaler_config("2") is None
    finally:
        proc.kill()
        proc.wait()


def test_ray_init_still_takes_the_loopback_and_system_config_arguments():
    """If this fails: ray.init renamed `_node_ip_address` (jobs/cluster/ray_session.py) or
    `_system_config` (tests/conftest.py); pass what replaced it."""
    import ray

    source = inspect.getsource(ray.init)
    for name in (*ray_internals.LOOPBACK_INIT_ARGS, "_system_config"):
        assert f'"{name}"' in source, name


def test_gcs_cluster_config_answers_on_a_running_ray(ray_session):
    """A local Ray has no autoscaler: the call itself works and finds no config."""
    import ray._private.state

    assert ray._private.state.state.get_cluster_config() is None
    assert ray_internals.gcs_cluster_config() is None


def test_repartition_still_needs_its_cpus_set_through_the_plan(ray_session):
    """If the first assert fails: Ray's repartition takes task options now; pass num_cpus
    there and delete set_repartition_cpus. If a later one fails: its plan changed shape."""
    import ray.data

    options = inspect.signature(ray.data.Dataset.repartition).parameters
    assert "num_cpus" not in options and "ray_remote_args" not in options
    ds = ray.data.range(8).repartition(target_num_rows_per_block=4)
    op = ds._logical_plan.dag
    assert type(op).__name__ == "StreamingRepartition"
    assert ray_internals.set_repartition_cpus(ds, 0.25) is ds
    assert ds._logical_plan.dag.ray_remote_args["num_cpus"] == 0.25
    assert ds.count() == 8  # the plan still runs


def test_the_test_suites_own_ray_internals_exist():
    """tests/integration/autoscaling.py and tests/unit/test_cluster_yaml.py use these."""
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
    from ray.autoscaler._private.util import prepare_config, validate_config

    assert isinstance(FAKE_HEAD_NODE_ID, str) and FAKE_HEAD_NODE_ID
    assert list(inspect.signature(prepare_config).parameters) == ["config"]
    assert list(inspect.signature(validate_config).parameters) == ["config"]
