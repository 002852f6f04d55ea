"""The job spec's optional `kube:` block: how `corpusmill kube` lays the job out on Kubernetes
(KubeRay). It changes nothing about what the job computes (not part of the job id) and
`corpusmill run` ignores it. Unknown keys are refused, as everywhere in the spec."""
from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Quantity = str | int | float  # a Kubernetes resource quantity: 4, "500m", "16Gi"


class KubePod(_Strict):
    """CPU and memory of one pod; requests and limits are set equal (KubeRay tells Ray the
    node's CPUs from the limit)."""
    cpu: Quantity = Field(4, description="CPUs of the pod, e.g. 4 or \"3500m\".")
    memory: str = Field("16Gi", description="Memory of the pod, e.g. \"16Gi\".")


class KubeWorkers(KubePod):
    """A worker group the autoscaler grows from `min_workers` to `max_workers` pods."""
    min_workers: int = Field(0, ge=0, description="Pods the group keeps while the job runs.")
    max_workers: int | None = Field(None, ge=1, description="Pods the group may grow to; "
                                    "default: enough for the spec's resources.concurrency "
                                    "(4 when it is `auto`).")


class Toleration(_Strict):
    key: str = Field(..., description="Taint key, e.g. nvidia.com/gpu.")
    operator: Literal["Exists", "Equal"] = Field("Exists", description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect; empty: all effects.")


class KubeGpuWorkers(KubeWorkers):
    """The GPU worker group, where the inference actors run."""
    gpus: int = Field(1, ge=1, description="GPUs per worker pod (nvidia.com/gpu limit).")
    gpu_type: str | None = Field(None, description="GPU model to ask for, as the NVIDIA GPU "
                                 "feature discovery label nvidia.com/gpu.product names it "
                                 "(e.g. NVIDIA-L4); default: any GPU node.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node "
                                          "labels the GPU pods must run on, e.g. "
                                          "{cloud.google.com/gke-accelerator: nvidia-l4}.")
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", effect="NoSchedule")],
        description="Taints of the GPU nodes the pods tolerate; default: nvidia.com/gpu "
                    "(the taint GPU node pools usually carry).")


class KubeVolume(_Strict):
    """A PersistentVolumeClaim mounted at the same path on the head and every worker, so job
    paths under it are storage every node sees."""
    claim: str = Field(..., description="Name of the PersistentVolumeClaim (ReadWriteMany for "
                       "several nodes).")
    mount_path: str = Field(..., description="Where it is mounted in every pod, e.g. "
                            "/mnt/data; job paths under it are accepted.")

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "":
            raise ValueError("mount_path must be an absolute folder such as /mnt/data")
        return posixpath.normpath(value)


class KubeSettings(_Strict):
    namespace: str | None = Field(None, description="Namespace of everything rendered; "
                                  "default: kubectl's current one.")
    image: str | None = Field(None, description="Container image with corpusmill installed "
                              "(all pods); default: rayproject/ray of the installed Ray "
                              "version, with corpusmill added by `pip`.")
    pip: list[str] = Field(default_factory=list, description="pip requirements the job's "
                           "runtime environment installs on every node (runtimeEnvYAML), "
                           "e.g. a corpusmill wheel URL; not needed with an image that has "
                           "corpusmill.")
    secret: str | None = Field(None, description="Name of a Kubernetes Secret whose keys "
                               "become environment variables of every Ray pod (envFrom): "
                               "object-storage credentials such as AWS_ACCESS_KEY_ID.")
    service_account: str | None = Field(None, description="Service account of the Ray pods "
                                        "(e.g. one bound to a cloud IAM role).")
    head: KubePod = Field(default_factory=lambda: KubePod(cpu=4, memory="16Gi"),
                          description="The head pod: runs the job's driver and its CPU tasks.")
    gpu_workers: KubeGpuWorkers = Field(default_factory=KubeGpuWorkers,
                                        description="The GPU worker group.")
    cpu_workers: KubeWorkers = Field(default_factory=lambda: KubeWorkers(memory="8Gi"),
                                     description="The CPU worker group: rendered when the "
                                     "model runs on CPU (resources.num_gpus: 0) or when "
                                     "max_workers is set.")
    volumes: list[KubeVolume] = Field(default_factory=list, description="PersistentVolumeClaims "
                                      "mounted on every pod.")
    ttl_seconds_after_finished: int = Field(3600, ge=0, description="Seconds the finished "
                                            "cluster's RayJob stays before KubeRay deletes it.")
    backoff_limit: int = Field(2, ge=0, description="Retries of a failed run (each resumes "
                               "where the last stopped: rows are never lost or doubled).")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Stop a run that "
                                                "takes longer than this.")
