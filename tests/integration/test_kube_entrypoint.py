"""The command a rendered RayJob (and RayCronJob) runs is the command that works: the
entrypoint string taken from the manifest runs, through a shell as Ray's job supervisor runs
it, with RAY_ADDRESS pointing at a Ray head started here (`ray start --head`, token
authentication as KubeRay's `authOptions.mode: token` gives the pods), and completes the job.

What stands in for Kubernetes, and nothing else:
- the PersistentVolumeClaim: the test's data folder, mounted (`--volume CLAIM:PATH`) at its own
  path, so the spec's paths need no change;
- the ConfigMap volume: the ConfigMap's `job.yaml` is written to a local folder, and that
  folder replaces the one mount path (/etc/corpusmill) in the entrypoint string. This is the
  only substitution; the rest of the command is run as rendered.
Only this head's processes are stopped (matched by its own temp dir and port)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from corpusmill.jobs.cli import EXIT_OK, main
from tests.conftest import free_port, write_job, write_parquet
from tests.corpora import varied_texts
from tests.integration.autoscaling import ray_cli, token_auth_env


@pytest.fixture(scope="module")
def ray_head():
    temp = tempfile.mkdtemp(prefix="cmkube")  # short: Ray's socket paths are limited
    port = free_port()
    env = token_auth_env()
    ports = [f"--{name}={free_port()}" for name in (
        "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "ray-client-server-port", "runtime-env-agent-port", "metrics-export-port",
        "node-manager-port", "object-manager-port")]
    try:
        subprocess.run([ray_cli(), "start", "--head", f"--port={port}", *ports, "--num-cpus=2",
                        f"--temp-dir={temp}", "--node-ip-address=127.0.0.1",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True,
                       timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        for pattern in (temp, f":{port}"):
            subprocess.run(["pkill", "-9", "-f", pattern])
        time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)


def render(tmp_path: Path, capsys, tiny, *flags) -> tuple[dict, dict, Path]:
    """Manifests for a job whose corpus, model and output are on the 'volume' (data/)."""
    data = tmp_path / "data"
    texts = varied_texts(150, seed=7)
    for part in range(2):
        write_parquet(data / "corpus" / f"part-{part}.parquet",
                      {"body": texts[part * 50:(part + 1) * 50]})
    write_parquet(tmp_path / "later.parquet", {"body": texts[100:]})  # arrives later
    shutil.copytree(tiny.classifier, data / "models" / "classifier")
    job = write_job(tmp_path / "job.yaml", task="text-classification",
                    model=str(data / "models" / "classifier"), input=str(data / "corpus"),
                    output=str(data / "out"), columns={"text": "body"},
                    resources={"concurrency": 1, "num_gpus": 0})
    out = tmp_path / "manifests.yaml"
    assert main(["kube", str(job), "--image", "corpusmill:test", "--volume",
                 f"corpora:{data}", "-o", str(out), *flags]) == EXIT_OK
    capsys.readouterr()
    assert main(["kube", "--check", str(out)]) == EXIT_OK
    config_map, job_doc = (d for d in yaml.safe_load_all(out.read_text()) if d)
    return config_map, job_doc, data


def run_entrypoint(config_map: dict, job: dict, spec_dir: Path, address: str):
    body = job["spec"].get("jobTemplate", job["spec"])  # RayCronJob or RayJob
    head = body["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = [m["mountPath"] for m in head["containers"][0]["volumeMounts"]
                if m["name"] == "job-spec"]
    (volume,) = [v for v in head["volumes"] if v["name"] == "job-spec"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    spec_dir.mkdir(exist_ok=True)
    for key, text in config_map["data"].items():  # what the ConfigMap volume shows
        (spec_dir / key).write_text(text)
    assert f"{mount}/job.yaml" in body["entrypoint"]
    command = body["entrypoint"].replace(mount, str(spec_dir))
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, shell=True, env=env, capture_output=True, text=True,
                          timeout=600)


def output_ids(folder: Path) -> list[str]:
    return pq.read_table(folder, columns=["row_id"]).column("row_id").to_pylist()


def test_the_rayjob_entrypoint_completes_the_job(tmp_path, capsys, tiny, ray_head):
    config_map, job, data = render(tmp_path, capsys, tiny)
    assert job["kind"] == "RayJob"
    done = run_entrypoint(config_map, job, tmp_path / "spec", ray_head)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert "100 rows in from 2 file(s), 100 out" in done.stdout
    ids = output_ids(data / "out")
    assert len(ids) == len(set(ids)) == 100


def test_each_scheduled_run_processes_only_new_files(tmp_path, capsys, tiny, ray_head):
    config_map, cron, data = render(tmp_path, capsys, tiny, "--schedule", "*/10 * * * *")
    assert cron["kind"] == "RayCronJob"
    first = run_entrypoint(config_map, cron, tmp_path / "spec", ray_head)
    assert first.returncode == EXIT_OK, first.stdout + first.stderr
    assert "incremental: 2 new file(s)" in first.stdout

    shutil.copy(tmp_path / "later.parquet", data / "corpus" / "part-2.parquet")
    second = run_entrypoint(config_map, cron, tmp_path / "spec", ray_head)
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    assert "incremental: 1 new file(s)" in second.stdout
    ids = output_ids(data / "out")
    assert len(ids) == len(set(ids)) == 150

    # nothing new: `corpusmill run` exits 4, which a RayJob would count as a failure and
    # retry; the rendered entrypoint makes it 0 and still says so
    third = run_entrypoint(config_map, cron, tmp_path / "spec", ray_head)
    assert third.returncode == EXIT_OK, third.stdout + third.stderr
    assert "nothing new" in third.stdout
    assert len(output_ids(data / "out")) == 150
