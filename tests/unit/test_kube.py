"""`corpusmill kube`: the KubeRay manifests a user applies, checked offline against the CRDs of
KubeRay v1.7.0 (strictly: an unknown field is an error), refusing what cannot run on
Kubernetes, and never carrying a credential. No cluster, no Ray, no model."""
from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from corpusmill.jobs.cluster import kube_check
from corpusmill.jobs.cli import EXIT_INVALID, EXIT_OK, main
from corpusmill.spec import load_spec, parse_spec
from tests.conftest import write_job

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "jobs" / "examples" / "topics_minilm.yaml"
ON_S3 = ["--set", "input=s3://corpora/articles/", "--set", "output=s3://results/topics/"]
PIP = ["--pip", "corpusmill[demo,cloud] @ https://example.com/corpusmill-0.1.0-py3-none-any.whl"]


def render_cli(capsys, *args) -> list[dict]:
    assert main(["kube", *args]) == EXIT_OK, capsys.readouterr().err
    return [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]


def gpu_job(tmp_path, **extra) -> Path:
    spec = {"task": "text-classification", "model": "org/classifier",
            "input": "s3://corpora/reviews/", "output": "s3://results/reviews/",
            "columns": {"text": "body"},
            "resources": {"num_gpus": 1, "concurrency": {"min": 1, "max": 6}},
            "kube": {"namespace": "batch", "image": "registry.example/corpusmill:0.1.0",
                     "secret": "s3-credentials", "service_account": "corpusmill-runner",
                     "gpu_workers": {"gpus": 2, "gpu_type": "NVIDIA-L4",
                                     "node_selector": {"pool": "gpu"}}}}
    spec.update(extra)
    return write_job(tmp_path / "gpu.yaml", **spec)


def containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def test_demo_job_renders_a_configmap_and_a_rayjob_that_pass_the_crd_check(tmp_path, capsys):
    out = tmp_path / "demo.yaml"
    assert main(["kube", str(DEMO), *ON_S3, *PIP, "-o", str(out)]) == EXIT_OK
    assert "kubectl apply -f" in capsys.readouterr().out
    config_map, job = kube_check.check_text(out.read_text(), str(out))  # raises on any problem
    assert main(["kube", "--check", str(out)]) == EXIT_OK
    assert "match the KubeRay v1.7.0 CRDs" in capsys.readouterr().out

    assert (config_map["kind"], job["kind"], job["apiVersion"]) == ("ConfigMap", "RayJob",
                                                                    "ray.io/v1")
    body = job["spec"]
    assert body["entrypoint"].startswith("corpusmill run /etc/corpusmill/job.yaml")
    # KubeRay's submitter pastes the entrypoint into a shell line (`ray job submit ... --
    # ENTRYPOINT ;`): it must be plain words, with nothing a shell would reinterpret
    assert shlex.join(shlex.split(body["entrypoint"])) == body["entrypoint"]
    assert body["shutdownAfterJobFinishes"] is True
    assert body["ttlSecondsAfterFinished"] > 0 and body["backoffLimit"] >= 1
    assert "activeDeadlineSeconds" not in body
    assert yaml.safe_load(body["runtimeEnvYAML"]) == {"pip": [PIP[1]]}
    cluster = body["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]["template"]
    assert {"name": "job-spec", "mountPath": "/etc/corpusmill", "readOnly": True} in \
        containers(head)[0]["volumeMounts"]
    assert head["spec"]["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]
    assert "nvidia.com/gpu" not in containers(head)[0]["resources"]["limits"]  # a CPU head
    # resources left at auto: a GPU group from 0 to 4 (the default bound), no CPU group
    (gpu,) = cluster["workerGroupSpecs"]
    assert (gpu["groupName"], gpu["minReplicas"], gpu["maxReplicas"]) == ("gpu", 0, 4)
    assert containers(gpu["template"])[0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert containers(gpu["template"])[0]["image"].endswith("-gpu")

    # the mounted spec is the resolved spec `submit` ships: overrides applied, paths absolute
    mounted = yaml.safe_load(config_map["data"]["job.yaml"])
    expected = load_spec(DEMO, [ON_S3[1], ON_S3[3]]).model_dump(mode="json", exclude={"kube"})
    assert mounted == expected
    assert parse_spec(mounted).job_id == load_spec(DEMO, [ON_S3[1], ON_S3[3]]).job_id


def test_gpu_job_takes_its_groups_from_the_spec_and_its_kube_block(tmp_path, capsys):
    config_map, job = render_cli(capsys, str(gpu_job(tmp_path)), "--active-deadline", "7200")
    assert kube_check.check_documents([config_map, job]) == []
    assert job["metadata"]["namespace"] == config_map["metadata"]["namespace"] == "batch"
    body = job["spec"]
    assert body["activeDeadlineSeconds"] == 7200
    assert "runtimeEnvYAML" not in body  # the image has corpusmill
    (gpu,) = body["rayClusterSpec"]["workerGroupSpecs"]
    # at most 6 actors of 1 GPU, 2 GPUs per pod: 3 pods
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 3)
    pod = gpu["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["containers"][0]["image"] == "registry.example/corpusmill:0.1.0"
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "corpusmill-runner"


def test_a_cpu_job_gets_a_cpu_worker_group_and_no_gpu_group(tmp_path, capsys):
    job_file = gpu_job(tmp_path, resources={"num_gpus": 0, "concurrency": 16,
                                            "cpus_per_actor": 1})
    _, job = render_cli(capsys, str(job_file))
    (cpu,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert cpu["groupName"] == "cpu" and cpu["maxReplicas"] == 4  # 16 actors, 4 per 4-CPU pod
    assert "nvidia.com/gpu" not in containers(cpu["template"])[0]["resources"]["limits"]


@pytest.mark.parametrize("breakage, unexpected", [
    (lambda d: d[1]["spec"].update(bakoffLimit=2), "bakoffLimit"),
    (lambda d: d[1]["spec"]["rayClusterSpec"].update(enableInTreeAutoscalling=True),
     "enableInTreeAutoscalling"),
    (lambda d: containers(d[1]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])[0]
     .update(imagePullPolice="Always"), "imagePullPolice"),
    (lambda d: d[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(maxReplica=3),
     "maxReplica"),
    (lambda d: d[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
     .update(nodeSelektor={}), "nodeSelektor"),
    (lambda d: d[0].update(datta={}), "datta"),
    (lambda d: d[1]["metadata"].update(nmae="x"), "nmae"),
])
def test_an_unknown_field_anywhere_fails_the_check(tmp_path, capsys, breakage, unexpected):
    documents = render_cli(capsys, str(gpu_job(tmp_path)))
    broken = copy.deepcopy(documents)
    breakage(broken)
    problems = kube_check.check_documents(broken)
    assert problems and any(f"'{unexpected}' was unexpected" in p for p in problems), problems
    out = tmp_path / "broken.yaml"
    out.write_text(yaml.safe_dump_all(broken))
    assert main(["kube", "--check", str(out)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert unexpected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_check_accepts_valid_edits_and_refuses_wrong_types_and_names(tmp_path, capsys):
    documents = render_cli(capsys, str(gpu_job(tmp_path)))
    edited = copy.deepcopy(documents)  # fields the CRD knows: a user may add them
    containers(edited[1]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])[0][
        "imagePullPolicy"] = "Always"
    edited[1]["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = "0"
    assert kube_check.check_documents(edited) == []

    wrong = copy.deepcopy(documents)
    wrong[1]["spec"]["backoffLimit"] = "two"
    wrong[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName")
    wrong[1]["metadata"]["name"] = "x" * 48  # a RayJob name has at most 47 characters
    problems = " ".join(kube_check.check_documents(wrong))
    assert "spec.backoffLimit: 'two' is not of type 'integer'" in problems
    assert "'groupName' is a required property" in problems
    assert "metadata.name" in problems


def test_schedule_gives_a_raycronjob_whose_runs_process_only_new_files(tmp_path, capsys):
    config_map, cron = render_cli(capsys, str(gpu_job(tmp_path)), "--schedule", "15 * * * *",
                                  "--name", "hourly-reviews")
    assert kube_check.check_documents([config_map, cron]) == []
    assert (cron["kind"], cron["metadata"]["name"]) == ("RayCronJob", "hourly-reviews")
    assert cron["spec"]["schedule"] == "15 * * * *"
    template = cron["spec"]["jobTemplate"]
    assert template["entrypoint"].startswith("corpusmill run /etc/corpusmill/job.yaml")
    assert template["shutdownAfterJobFinishes"] is True
    assert "--exit-zero-if-complete" in template["entrypoint"]  # "nothing new" is no failure
    mounted = yaml.safe_load(config_map["data"]["job.yaml"])
    assert mounted["incremental"] is True and mounted["output_mode"] == "resume"


def test_schedule_refuses_overwrite_and_bad_cron(capsys):
    assert main(["kube", str(DEMO), *ON_S3, *PIP, "--schedule", "@hourly"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "output_mode: overwrite" in err and "--set output_mode=resume" in err
    assert main(["kube", str(DEMO), *ON_S3, *PIP, "--set", "output_mode=error",
                 "--schedule", "@hourly"]) == EXIT_INVALID
    assert "output_mode: error, which would refuse every run after the first" in \
        capsys.readouterr().err
    assert main(["kube", str(DEMO), *ON_S3, *PIP, "--set", "output_mode=resume",
                 "--schedule", "every hour"]) == EXIT_INVALID
    assert "not a cron schedule" in capsys.readouterr().err
    assert main(["kube", str(DEMO), *ON_S3, *PIP, "--set", "output_mode=resume",
                 "--schedule", "@hourly"]) == EXIT_OK


@pytest.mark.parametrize("key", ["input", "output"])
def test_a_local_path_is_refused_naming_it_and_the_fix(capsys, key):
    other = "output" if key == "input" else "input"
    args = ["--set", f"{other}=s3://bucket/{other}/"]
    assert main(["kube", str(DEMO), *args, *PIP]) == EXIT_INVALID
    err = capsys.readouterr().err
    local = str(load_spec(DEMO).model_dump()[key])
    assert f"{key} {local} is a path on this machine" in err
    assert f"--set {key}=s3://" in err and "--volume CLAIM:/mnt/data" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_paths_under_a_mounted_volume_are_accepted_and_mounted_everywhere(capsys):
    on_volume = ["--set", "input=/mnt/data/articles/", "--set", "output=/mnt/data/out/topics"]
    _, job = render_cli(capsys, str(DEMO), *on_volume, *PIP, "--volume", "corpora:/mnt/data")
    cluster = job["spec"]["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"],
                     *(g["template"] for g in cluster["workerGroupSpecs"])]:
        assert {"name": "data-0", "mountPath": "/mnt/data"} in containers(template)[0][
            "volumeMounts"]
        assert {"name": "data-0", "persistentVolumeClaim": {"claimName": "corpora"}} in \
            template["spec"]["volumes"]
    # a path beside the mount is still local
    assert main(["kube", str(DEMO), "--set", "input=/mnt/database/a/", "--set",
                 "output=/mnt/data/out", *PIP, "--volume", "corpora:/mnt/data"]) == EXIT_INVALID
    assert "outside the mounted volume(s) /mnt/data" in capsys.readouterr().err


def test_credentials_are_never_rendered_only_the_secret_name(tmp_path, capsys, monkeypatch):
    sentinels = {"AWS_ACCESS_KEY_ID": "AKIASENTINEL0000KEY", "AWS_SECRET_ACCESS_KEY":
                 "sentinel-secret-Zq81xW", "AWS_SESSION_TOKEN": "sentinel-session-token-77",
                 "AWS_ENDPOINT_URL": "http://sentinel-endpoint.internal:9000"}
    for name, value in sentinels.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "job.yaml"
    assert main(["kube", str(gpu_job(tmp_path)), "--secret", "object-store", "--set",
                 "resources.num_gpus=0", "-o", str(out)]) == EXIT_OK
    text = out.read_text()
    for value in sentinels.values():
        assert value not in text
    _, job = kube_check.check_text(text, str(out))
    cluster = job["spec"]["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"],
                     *(g["template"] for g in cluster["workerGroupSpecs"])]:
        (container,) = containers(template)
        assert container["envFrom"] == [{"secretRef": {"name": "object-store"}}]
        assert "env" not in container


def test_the_default_image_needs_corpusmill_added(capsys):
    assert main(["kube", str(DEMO), *ON_S3]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "rayproject/ray:2.60.0-py" in err and "--image" in err and "--pip" in err


def test_kube_block_is_typed_and_refuses_unknown_keys(tmp_path, capsys):
    job = gpu_job(tmp_path, kube={"gpu_workers": {"gpu": 2}})
    assert main(["kube", str(job)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "unknown key 'kube.gpu_workers.gpu'" in err and "gpus" in err
    job = gpu_job(tmp_path, kube={"image": "x", "volumes": [{"claim": "c", "path": "/m"}]})
    assert main(["kube", str(job)]) == EXIT_INVALID
    assert "unknown key 'kube.volumes.0.path'; accepted: claim, mount_path" in \
        capsys.readouterr().err
    # the block is not part of what the job computes
    with_block = load_spec(gpu_job(tmp_path))
    assert with_block.job_id == parse_spec({**with_block.model_dump(), "kube": None}).job_id


def test_flags_override_the_kube_block(tmp_path, capsys):
    _, job = render_cli(capsys, str(gpu_job(tmp_path)), "--image", "other/image:2",
                        "--namespace", "nightly")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert containers(head)[0]["image"] == "other/image:2"
    assert job["metadata"]["namespace"] == "nightly"


def test_kube_without_a_job_or_check_is_a_clear_error(capsys):
    assert main(["kube"]) == EXIT_INVALID
    assert "give a job spec" in capsys.readouterr().err


def test_a_raycluster_document_is_checked_against_the_raycluster_crd(tmp_path, capsys):
    _, job = render_cli(capsys, str(gpu_job(tmp_path)))
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
               "metadata": {"name": "reviews", "namespace": "batch"},
               "spec": copy.deepcopy(job["spec"]["rayClusterSpec"])}
    assert kube_check.check_documents([cluster]) == []
    cluster["spec"]["headGroupSpec"]["serviceTyp"] = "ClusterIP"
    (problem,) = kube_check.check_documents([cluster])
    assert "RayCluster reviews: spec.headGroupSpec:" in problem and "'serviceTyp'" in problem
    assert kube_check.check_documents([{**cluster, "apiVersion": "ray.io/v1alpha1"}])
    assert "is not one this check knows" in kube_check.check_documents([{"kind": "Deployment"}])[0]
    problems = kube_check.check_documents([{**cluster, "metadata": "reviews"}])
    assert "RayCluster document 1: metadata: 'reviews' is not of type 'object'" in problems
