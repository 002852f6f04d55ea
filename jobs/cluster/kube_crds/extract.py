"""Regenerate kuberay-v1.7.0.json, the KubeRay CRD facts `corpusmill kube --check` validates
against, from KubeRay's own published CRDs. Not imported by corpusmill; run it by hand:

    git clone https://github.com/ray-project/kuberay && cd kuberay && git checkout v1.7.0
    python jobs/cluster/kube_crds/extract.py /path/to/kuberay > jobs/cluster/kube_crds/kuberay-v1.7.0.json

What is kept, for each of ray.io_rayclusters.yaml, ray.io_rayjobs.yaml and ray.io_raycronjobs.yaml
under ray-operator/config/crd/bases/: the `v1` version's `openAPIV3Schema`, without its `status`
(the operator writes that, a manifest never does) and with only the keywords a structural
validation reads (types, properties, items, required, enums, formats, patterns, bounds, the
`x-kubernetes-preserve-unknown-fields` / `x-kubernetes-int-or-string` markers). Dropped:
descriptions, defaults, list/map-type hints, and the CEL rules (`x-kubernetes-validations`,
which jsonschema cannot evaluate; they concern deletionStrategy, managedBy and immutability on
update, none of which corpusmill writes). The RayJob's `rayClusterSpec` equals the RayCluster's
`spec`, and the RayCronJob's `jobTemplate` equals the RayJob's `spec` (checked here), so each
is stored once under `$defs` and referenced. The name limits come from
ray-operator/controllers/ray/utils/constant.go (MaxRay*NameLength) and validation.go (DNS-1035).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

TAG = "v1.7.0"
BASES = "ray-operator/config/crd/bases"
KEEP = {"type", "properties", "items", "required", "enum", "format", "pattern", "minimum",
        "maximum", "minLength", "maxLength", "minItems", "maxItems", "anyOf", "allOf", "oneOf",
        "additionalProperties", "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string"}
NAME_LIMITS = {"RayCluster": 53, "RayJob": 47, "RayCronJob": 36}


def kept(node):
    """The schema keywords a structural check reads, recursively (property names kept as-is)."""
    if isinstance(node, list):
        return [kept(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: kept(sub) for name, sub in value.items()}
        elif key in KEEP:
            out[key] = kept(value)
    return out


def crd_schema(repo: Path, plural: str) -> dict:
    text = subprocess.run(["git", "-C", str(repo), "show", f"{TAG}:{BASES}/ray.io_{plural}.yaml"],
                          check=True, capture_output=True, text=True).stdout
    crd = yaml.safe_load(text)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = kept(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    return schema


def main(repo: str) -> None:
    root = Path(repo)
    commit = subprocess.run(["git", "-C", repo, "rev-parse", f"{TAG}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    cluster, job, cron = (crd_schema(root, p) for p in ("rayclusters", "rayjobs", "raycronjobs"))
    cluster_spec = cluster["properties"]["spec"]
    job_spec = job["properties"]["spec"]
    assert job_spec["properties"]["rayClusterSpec"] == cluster_spec
    assert cron["properties"]["spec"]["properties"]["jobTemplate"] == job_spec
    job_spec["properties"]["rayClusterSpec"] = {"$ref": "#/$defs/RayClusterSpec"}
    cluster["properties"]["spec"] = {"$ref": "#/$defs/RayClusterSpec"}
    job["properties"]["spec"] = {"$ref": "#/$defs/RayJobSpec"}
    cron["properties"]["spec"]["properties"]["jobTemplate"] = {"$ref": "#/$defs/RayJobSpec"}
    facts = {
        "source": {
            "repository": "https://github.com/ray-project/kuberay", "tag": TAG, "commit": commit,
            "paths": [f"{BASES}/ray.io_{p}.yaml" for p in ("rayclusters", "rayjobs", "raycronjobs")],
            "name_limits_from": "ray-operator/controllers/ray/utils/constant.go, validation.go",
            "generated_by": "jobs/cluster/kube_crds/extract.py",
        },
        "name_limits": NAME_LIMITS,
        "$defs": {"RayClusterSpec": cluster_spec, "RayJobSpec": job_spec},
        "kinds": {"RayCluster": cluster, "RayJob": job, "RayCronJob": cron},
    }
    json.dump(facts, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
