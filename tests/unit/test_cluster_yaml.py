"""cluster.yaml is a config that `ray up` accepts: checked with Ray's own launcher code, offline.

`ray up` (ray.autoscaler._private.commands._bootstrap_config) runs `prepare_config` (merge the
provider's defaults.yaml, merge setup commands, fill per-type min/max workers) and then
`validate_config` (jsonschema against ray/autoscaler/ray-schema.json, plus its own checks) before
it talks to the cloud. The tests run those same two steps; no network or credentials needed."""
import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).parents[2] / "cluster.yaml"


@pytest.fixture
def config() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def check(config: dict) -> dict:
    """What `ray up` does to the config before contacting the cloud provider."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_launcher_validation(config):
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"] == "us-west-2"
    prepared = check(config)
    # Our setup commands, not Ray's defaults, are what runs on the nodes.
    assert any("pip install -e \"$HOME/corpusmill[generate,cloud]\"" in c for c in prepared["head_setup_commands"])
    assert any("pip install -e \"$HOME/corpusmill[generate,cloud]\"" in c for c in prepared["worker_setup_commands"])
    assert config["file_mounts"] == {"~/corpusmill": "."}


@pytest.mark.parametrize("breakage", [
    pytest.param(lambda c: c.update(max_workers="many"), id="max_workers-not-an-integer"),
    pytest.param(lambda c: c.update(max_wrokers=4), id="unknown-top-level-key"),
    pytest.param(lambda c: c["available_node_types"]["worker_gpu"].update(min_worker=0),
                 id="unknown-node-type-key"),
    pytest.param(lambda c: c["available_node_types"]["worker_gpu"]["resources"].update(GPU="1"),
                 id="resource-not-an-integer"),
    pytest.param(lambda c: c["available_node_types"]["worker_gpu"].pop("node_config"),
                 id="node-type-without-node_config"),
])
def test_broken_copies_fail_validation(config, breakage):
    broken = copy.deepcopy(config)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        check(broken)


def test_head_type_missing_from_node_types_fails(config):
    broken = copy.deepcopy(config)
    broken["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        check(broken)


def test_gpu_workers_autoscale_from_zero_and_head_has_no_gpu(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] >= 1
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    gpu_workers = [t for t in workers if t["resources"].get("GPU", 0) >= 1]
    assert gpu_workers, "no worker node type offers a GPU"
    for t in gpu_workers:
        assert t["min_workers"] == 0
        assert t["max_workers"] >= 1
    assert config["max_workers"] >= max(t["max_workers"] for t in gpu_workers)


def test_gpu_setup_installs_cuda_torch_before_corpusmill_without_the_cpu_pin(config):
    cmds = config["worker_setup_commands"]
    drop_pin = next(i for i, c in enumerate(cmds) if "grep -v '^torch=='" in c)
    torch = next(i for i, c in enumerate(cmds) if c.strip() == "pip install torch")
    corpusmill = next(i for i, c in enumerate(cmds) if "pip install -e \"$HOME/corpusmill[generate,cloud]\"" in c)
    assert drop_pin < corpusmill and torch < corpusmill
    assert "-c /tmp/constraints-gpu.txt" in cmds[corpusmill]
    assert "constraints.txt" not in cmds[corpusmill]


def test_auto_resources_on_this_cluster_are_an_elastic_gpu_pool_from_one_to_four(config):
    """What placement decides from the node types the autoscaler runs with: the head alone has
    no GPU, yet the job asks for GPUs, from 1 actor up to one per GPU node it can add."""
    from corpusmill.jobs.cluster.cluster_view import node_types_from_autoscaling_config
    from corpusmill.jobs.cluster.placement import ClusterView, NodeNow, resolve_placement
    from corpusmill.spec import Resources

    types, cap = node_types_from_autoscaling_config(check(config))
    head = config["available_node_types"][config["head_node_type"]]["resources"]
    cluster = ClusterView(nodes=(NodeNow("head", cpus=head["CPU"], gpus=0, is_head=True),),
                          node_types=tuple(types), max_workers=cap)
    placed = resolve_placement(Resources(), cluster, node_cores=head["CPU"])
    assert (placed.device, placed.min_actors, placed.max_actors) == ("gpu", 1, 4)
