"""A job on Kubernetes: `corpusmill kube JOB.yaml` renders KubeRay manifests, and checks them.

What it writes, in one YAML stream:
- a `ConfigMap` holding the resolved job spec (`load_spec`: `--set` overrides applied, relative
  paths absolute, as `corpusmill submit` ships it), mounted read-only into the head pod at
  SPEC_MOUNT;
- a `ray.io/v1` `RayJob` whose entrypoint is `corpusmill run SPEC_MOUNT/job.yaml
  --exit-zero-if-complete` on a cluster made for the job (torn down after it): a CPU head, a GPU
  worker group from `min_workers` (0) to a maximum derived from the spec's resources, a CPU
  worker group when the model runs on CPU, and KubeRay's in-tree autoscaler, which corpusmill's
  elastic actor pool grows; or, with a schedule, a `RayCronJob` carrying that RayJob spec as
  its `jobTemplate`, the spec set to `incremental: true` so every run processes only new files.

Every pod reads the input and writes the output, so a spec whose input, output or model
folder is a path on this machine is refused (object storage, or a PersistentVolumeClaim mounted
with `kube.volumes` / `--volume`). Credentials are never rendered: the pods take them from a
named Secret (`envFrom`). The Ray cluster uses token authentication (`authOptions.mode:
token`; KubeRay creates the token), as Ray 2.60 does by default.

What is rendered is checked before it is written (`manifests`), as `corpusmill kube --check`
checks a file: against KubeRay's CRD schemas, strictly (jobs/cluster/kube_check.py)."""
from __future__ import annotations

import math
import re
import sys

import yaml

from corpusmill.errors import JobError
from corpusmill.jobs.cluster.kube_check import DNS_1035, KUBERAY_VERSION, check_documents, crd_facts
from corpusmill.kube_spec import KubeSettings, KubeVolume

SPEC_MOUNT = "/etc/corpusmill"
SPEC_FILE = "job.yaml"
DEFAULT_MAX_WORKERS = 4  # the pool's bound when resources.concurrency is `auto`
CRON = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
                  r"|([0-9A-Za-z*?/,-]+\s+){4}[0-9A-Za-z*?/,-]+)$")


# ---------------------------------------------------------------------------------- render

def render(spec, settings: KubeSettings, *, name: str | None = None,
           schedule: str | None = None) -> list[dict]:
    """The manifests for `spec` (a validated JobSpec): [ConfigMap, RayJob or RayCronJob]."""
    name = name or f"{spec.task or 'tasks'}-{spec.job_id[:8]}"
    kind = "RayCronJob" if schedule else "RayJob"
    _check_name(name, kind)
    if schedule:
        spec = _scheduled(spec, schedule)
    refuse_local_paths(spec, settings.volumes)
    image_head, image_gpu = images(settings)
    config_map = f"{name}-spec"
    job_spec = {
        "entrypoint": f"corpusmill run {SPEC_MOUNT}/{SPEC_FILE} --exit-zero-if-complete",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        # a retry resumes the same output: committed rows are kept, none is written twice
        "backoffLimit": settings.backoff_limit,
    }
    if settings.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    if settings.pip:
        job_spec["runtimeEnvYAML"] = yaml.safe_dump({"pip": list(settings.pip)}, sort_keys=False)
    job_spec["rayClusterSpec"] = _cluster_spec(spec, settings, config_map, image_head, image_gpu)
    body = {"schedule": schedule, "jobTemplate": job_spec} if schedule else job_spec
    spec_text = yaml.safe_dump(spec.model_dump(mode="json", exclude={"kube"}), sort_keys=False)
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(config_map, settings, spec),
         "data": {SPEC_FILE: spec_text}},
        {"apiVersion": "ray.io/v1", "kind": kind, "metadata": _metadata(name, settings, spec),
         "spec": body},
    ]


def settings_for(spec, **flags) -> KubeSettings:
    """The spec's `kube:` block with the command line's values on top (None: not given)."""
    from corpusmill.spec import validate_spec

    values = (spec.kube or KubeSettings()).model_dump()
    volumes = flags.pop("volumes", None) or []
    values.update({key: value for key, value in flags.items() if value not in (None, [])})
    values["volumes"] = values["volumes"] + [_volume(item) for item in volumes]
    return validate_spec(KubeSettings, values, "kube settings", "namespace, image, ...")


def images(settings: KubeSettings) -> tuple[str, str]:
    """(head and CPU workers' image, GPU workers' image): `settings.image` for all, else the
    rayproject/ray images of the installed Ray and Python (`-gpu`: with CUDA), which hold no
    corpusmill: then `pip` must add it."""
    if settings.image:
        return settings.image, settings.image
    import ray

    base = f"rayproject/ray:{ray.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    if not settings.pip:
        raise JobError(f"the default image {base} has no corpusmill in it: give --image IMAGE "
                       f"(an image with corpusmill installed, e.g. one built FROM {base}) or "
                       f"--pip REQUIREMENT (e.g. a corpusmill wheel URL, installed on every node "
                       f"by the job's runtime environment); see docs/guides/kubernetes.md")
    return base, f"{base}-gpu"


def refuse_local_paths(spec, volumes: list[KubeVolume]) -> None:
    """Pods cannot see this machine's disk: input, output and a model folder must be object
    storage (any URI but file://) or under a mounted volume."""
    mounts = [v.mount_path for v in volumes]
    paths = [("input", spec.input), ("output", spec.output)]
    for one in spec.task_specs().values():
        if one.model.startswith(("/", "file://")):
            paths.append(("model", one.model))
    for key, path in paths:
        if "://" in path and not path.startswith("file://"):
            continue
        local = path.removeprefix("file://")
        if any(local == m or local.startswith(m.rstrip("/") + "/") for m in mounts):
            continue
        outside = f", outside the mounted volume(s) {', '.join(mounts)}" if mounts else ""
        raise JobError(
            f"{key} {path} is a path on this machine{outside}, which the pods on Kubernetes "
            f"cannot see: put it in object storage (e.g. --set {key}=s3://bucket/{key}/) or on "
            f"a PersistentVolumeClaim mounted in every pod (--volume CLAIM:/mnt/data, then "
            f"--set {key}=/mnt/data/...)")


def manifests(spec, settings: KubeSettings, *, name: str | None = None,
              schedule: str | None = None) -> str:
    """`render`'s documents as YAML, checked against the CRDs first."""
    documents = render(spec, settings, name=name, schedule=schedule)
    problems = check_documents(documents)
    if problems:  # our bug, not the user's: say so rather than write a manifest KubeRay refuses
        raise RuntimeError("rendered manifests fail the KubeRay CRD check: " + "; ".join(problems))
    return to_yaml(documents)


def to_yaml(documents: list[dict]) -> str:
    """One YAML stream; multi-line strings (the job spec) as literal blocks."""
    header = (f"# corpusmill kube: checked against the CRDs of KubeRay {KUBERAY_VERSION}. "
              f"Apply with: kubectl apply -f FILE\n")
    return header + yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False,
                                  default_flow_style=False, width=100)


class _Dumper(yaml.SafeDumper):
    pass


def _literal_strings(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal_strings)


def _scheduled(spec, schedule: str):
    """The spec a scheduled run needs: incremental, so each run adds only new files."""
    if not CRON.match(schedule.strip()):
        raise JobError(f"--schedule {schedule!r} is not a cron schedule: five fields "
                       f"(minute hour day month weekday), e.g. '0 * * * *', or @hourly, @daily")
    if spec.output_mode != "resume":
        effect = ("recompute everything every run" if spec.output_mode == "overwrite"
                  else "refuse every run after the first")
        raise JobError(f"a scheduled job runs incrementally (each run adds the rows of new "
                       f"files), but this spec has output_mode: {spec.output_mode}, which would "
                       f"{effect}: set output_mode: resume (--set output_mode=resume)")
    scheduled = spec.model_copy(update={"incremental": True})
    scheduled._options = spec.task_options
    scheduled._evaluate = spec.evaluate_options
    return scheduled


def _cluster_spec(spec, settings: KubeSettings, config_map: str, image_head: str,
                  image_gpu: str) -> dict:
    import ray

    on_gpu = spec.resources.num_gpus == "auto" or spec.resources.num_gpus > 0
    spec_volume = {"name": "job-spec", "configMap": {"name": config_map}}
    head = _pod(settings, image_head, "ray-head", settings.head.cpu, settings.head.memory,
                extra_volume=spec_volume, extra_mount={"name": "job-spec",
                                                       "mountPath": SPEC_MOUNT,
                                                       "readOnly": True})
    groups = []
    if on_gpu:
        groups.append(_gpu_group(spec, settings, image_gpu))
    if not on_gpu or settings.cpu_workers.max_workers is not None:
        groups.append(_cpu_group(spec, settings, image_head))
    return {
        "rayVersion": ray.__version__,
        "enableInTreeAutoscaling": True,
        "authOptions": {"mode": "token"},
        "headGroupSpec": {"rayStartParams": {}, "template": head},
        "workerGroupSpecs": groups,
    }


def _gpu_group(spec, settings: KubeSettings, image: str) -> dict:
    gpu = settings.gpu_workers
    per_actor = 1.0 if spec.resources.num_gpus == "auto" else float(spec.resources.num_gpus)
    if per_actor > gpu.gpus:
        raise JobError(f"resources.num_gpus is {per_actor:g} per actor, but a GPU worker pod has "
                       f"{gpu.gpus} (kube.gpu_workers.gpus): raise kube.gpu_workers.gpus or "
                       f"lower resources.num_gpus")
    actors = _max_actors(spec)
    needed = math.ceil(actors / math.floor(gpu.gpus / per_actor)) if actors else None
    maximum = _bounded("gpu_workers", gpu.min_workers, gpu.max_workers or needed)
    template = _pod(settings, image, "ray-worker", gpu.cpu, gpu.memory, gpus=gpu.gpus)
    selector = dict(gpu.node_selector)
    if gpu.gpu_type:
        selector["nvidia.com/gpu.product"] = gpu.gpu_type
    if selector:
        template["spec"]["nodeSelector"] = selector
    if gpu.tolerations:
        template["spec"]["tolerations"] = [t.model_dump(exclude_none=True)
                                           for t in gpu.tolerations]
    return _group("gpu", gpu.min_workers, maximum, template)


def _cpu_group(spec, settings: KubeSettings, image: str) -> dict:
    cpu = settings.cpu_workers
    actors = _max_actors(spec)
    per_pod = max(1, math.floor(_cpus(cpu.cpu) / spec.resources.cpus_per_actor))
    needed = math.ceil(actors / per_pod) if actors else None
    maximum = _bounded("cpu_workers", cpu.min_workers, cpu.max_workers or needed)
    return _group("cpu", cpu.min_workers, maximum,
                  _pod(settings, image, "ray-worker", cpu.cpu, cpu.memory))


def _group(name: str, minimum: int, maximum: int, template: dict) -> dict:
    return {"groupName": name, "replicas": minimum, "minReplicas": minimum,
            "maxReplicas": maximum, "rayStartParams": {}, "template": template}


def _pod(settings: KubeSettings, image: str, container: str, cpu, memory: str, *,
         gpus: int = 0, extra_volume: dict | None = None, extra_mount: dict | None = None) -> dict:
    amounts = {"cpu": _quantity(cpu), "memory": memory}
    limits = {**amounts, "nvidia.com/gpu": gpus} if gpus else dict(amounts)
    body = {"name": container, "image": image,
            "resources": {"requests": dict(amounts), "limits": limits}}
    if settings.secret:
        body["envFrom"] = [{"secretRef": {"name": settings.secret}}]
    volumes = [{"name": f"data-{i}", "persistentVolumeClaim": {"claimName": v.claim}}
               for i, v in enumerate(settings.volumes)]
    mounts = [{"name": f"data-{i}", "mountPath": v.mount_path}
              for i, v in enumerate(settings.volumes)]
    if extra_volume:
        volumes.insert(0, extra_volume)
        mounts.insert(0, extra_mount)
    if mounts:
        body["volumeMounts"] = mounts
    pod = {"containers": [body]}
    if volumes:
        pod["volumes"] = volumes
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    return {"spec": pod}


def _metadata(name: str, settings: KubeSettings, spec) -> dict:
    meta = {"name": name}
    if settings.namespace:
        meta["namespace"] = settings.namespace
    meta["labels"] = {"app.kubernetes.io/name": "corpusmill", "app.kubernetes.io/instance": name}
    meta["annotations"] = {"corpusmill/job-id": spec.job_id, "corpusmill/task": spec.task or ",".join(spec.tasks)}
    return meta


def _max_actors(spec) -> int | None:
    """The most inference actors the spec allows; None for `auto` (the cluster decides)."""
    concurrency = spec.resources.concurrency
    if concurrency == "auto":
        return None
    return concurrency if isinstance(concurrency, int) else concurrency.max


def _bounded(group: str, minimum: int, maximum: int | None) -> int:
    maximum = maximum or DEFAULT_MAX_WORKERS
    if minimum > maximum:
        raise JobError(f"kube.{group}.min_workers ({minimum}) is more than its max_workers "
                       f"({maximum}): lower min_workers or raise kube.{group}.max_workers")
    return maximum


def _cpus(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _quantity(value):
    return value if isinstance(value, int) else str(value)


def _volume(item: str) -> dict:
    claim, sep, mount = item.partition(":")
    if not sep or not claim or not mount:
        raise JobError(f"--volume expects CLAIM:/MOUNT/PATH (a PersistentVolumeClaim and where "
                       f"to mount it), got {item!r}")
    return {"claim": claim, "mount_path": mount}


def _check_name(name: str, kind: str) -> None:
    limit = crd_facts()["name_limits"][kind]
    if not re.match(DNS_1035, name) or len(name) > limit:
        raise JobError(f"--name {name!r}: a {kind} name must be at most {limit} characters of "
                       f"lower-case letters, digits and '-', starting with a letter "
                       f"(KubeRay {KUBERAY_VERSION})")
