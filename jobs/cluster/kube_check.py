"""Checking KubeRay manifests offline: `corpusmill kube --check FILE`, and every render.

A YAML stream of RayJob, RayCronJob, RayCluster and ConfigMap documents is validated with
jsonschema against the `v1` schemas of KubeRay KUBERAY_VERSION's published CRDs, kept in
kube_crds/ (what was kept, and the source's repository, tag, paths and commit, are named in the
file and in kube_crds/extract.py, which regenerates it). The check is strict where the CRDs
are not: jsonschema accepts unknown keys unless told otherwise, so every object that lists its
properties gets `additionalProperties: false`, except those the CRD marks
`x-kubernetes-preserve-unknown-fields`. `metadata` is checked against KubeRay's name rules
(DNS-1035, length limits from its constant.go). A ConfigMap is checked against a small schema of
our own (the fields corpusmill writes). CEL rules (`x-kubernetes-validations`) are not
evaluated; see extract.py."""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import yaml

from corpusmill.errors import JobError

KUBERAY_VERSION = "v1.7.0"
CRD_FACTS = Path(__file__).parent / "kube_crds" / f"kuberay-{KUBERAY_VERSION}.json"
RAY_KINDS = ("RayJob", "RayCronJob", "RayCluster")
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@functools.lru_cache(maxsize=1)
def crd_facts() -> dict:
    return json.loads(CRD_FACTS.read_text())


@functools.lru_cache(maxsize=None)
def schema_for(kind: str) -> dict:
    """The strict schema of a whole `kind` document (a Ray kind or ConfigMap)."""
    facts = crd_facts()
    if kind == "ConfigMap":
        return {"type": "object", "required": ["apiVersion", "kind", "metadata", "data"],
                "additionalProperties": False,
                "properties": {"apiVersion": {"const": "v1"}, "kind": {"const": "ConfigMap"},
                               "metadata": _metadata_schema(253, DNS_1123_SUBDOMAIN),
                               "data": {"type": "object",
                                        "additionalProperties": {"type": "string"}},
                               "immutable": {"type": "boolean"}}}
    schema = copy.deepcopy(facts["kinds"][kind])
    schema["$defs"] = copy.deepcopy(facts["$defs"])
    strict(schema)
    schema["properties"]["apiVersion"] = {"const": "ray.io/v1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = _metadata_schema(facts["name_limits"][kind], DNS_1035)
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


def strict(node) -> None:
    """additionalProperties: false wherever the CRD lists properties and does not mark the
    object x-kubernetes-preserve-unknown-fields (jsonschema accepts unknown keys otherwise)."""
    if isinstance(node, list):
        for item in node:
            strict(item)
        return
    if not isinstance(node, dict):
        return
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
    for key, value in node.items():
        if key == "properties":
            for sub in value.values():
                strict(sub)
        else:
            strict(value)


def _metadata_schema(max_length: int, pattern: str) -> dict:
    text_map = {"type": "object", "additionalProperties": {"type": "string"}}
    return {"type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "maxLength": max_length,
                                    "pattern": pattern},
                           "namespace": {"type": "string", "maxLength": 63,
                                         "pattern": DNS_1123_LABEL},
                           "labels": text_map, "annotations": text_map}}


def check_documents(documents: list) -> list[str]:
    """Problems of each document ('RayJob x: spec.foo: ...'); empty when all are valid."""
    from jsonschema import Draft202012Validator

    problems = []
    for number, document in enumerate(documents, 1):
        if not isinstance(document, dict):
            problems.append(f"document {number}: not a mapping")
            continue
        kind = document.get("kind")
        meta = document.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        name = name if isinstance(name, str) else f"document {number}"
        if kind not in (*RAY_KINDS, "ConfigMap"):
            problems.append(f"{name}: kind {kind!r} is not one this check knows (RayJob, "
                            f"RayCronJob, RayCluster, ConfigMap)")
            continue
        validator = Draft202012Validator(schema_for(kind))
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
            where = _path(error.absolute_path) or "(top)"
            problems.append(f"{kind} {name}: {where}: {error.message}")
    return problems


def check_text(text: str, source: str) -> list[dict]:
    """The documents of a YAML stream, or a JobError listing every problem."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise JobError(f"{source}: not valid YAML: {e}") from None
    if not documents:
        raise JobError(f"{source}: no Kubernetes documents in it")
    problems = check_documents(documents)
    if problems:
        raise JobError(f"{source} does not match the KubeRay {KUBERAY_VERSION} CRDs: "
                       + "; ".join(problems))
    return documents


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
