"""Submitting a job to a Ray cluster through the Ray Jobs API, and following it.

`corpusmill submit JOB.yaml --address http://HEAD:8265` validates the spec here, then ships
corpusmill's code (the `corpusmill` package with its `jobs`, `operators` and `pipelines`
rooms, laid out as installed) and the spec, with
`--set` overrides applied and relative paths made absolute, as the job's `working_dir`; the
entrypoint is `python -m corpusmill.jobs.cli run job.yaml` on the head node. The cluster must have
corpusmill's dependencies installed (cluster.yaml's setup commands do that). Paths in the spec
must be storage every node can reach; the run refuses node-local paths on a multi-node cluster
(jobs/stores/storage.py)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from corpusmill.errors import JobError

CODE_ROOMS = ("jobs", "operators", "pipelines")  # installed as corpusmill.<room>
SPEC_NAME = "job.yaml"
FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


def client(address: str | None):
    """A JobSubmissionClient; `address` defaults to RAY_API_SERVER_ADDRESS / RAY_ADDRESS."""
    _use_token_if_available()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001 - connection, auth and version errors alike
        raise JobError(f"cannot reach the Ray Jobs API at {address or '$RAY_ADDRESS'}: {e}. "
                       f"Give the dashboard address, e.g. --address http://HEAD:8265") from None


def stage(spec) -> str:
    """A folder holding corpusmill's code and the resolved spec: the job's working_dir."""
    import importlib

    import corpusmill

    folder = Path(tempfile.mkdtemp(prefix="corpusmill-submit-"))
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "examples")
    # the namespace package's own modules, then each room inside it, wherever they live here
    # (the repository's top-level folders, or site-packages)
    shutil.copytree(Path(corpusmill.__file__).parent, folder / "corpusmill", ignore=skip)
    for room in CODE_ROOMS:
        source = Path(importlib.import_module(f"corpusmill.{room}").__file__).parent
        shutil.copytree(source, folder / "corpusmill" / room, ignore=skip, dirs_exist_ok=True)
    data = spec.model_dump(mode="json")
    (folder / SPEC_NAME).write_text(yaml.safe_dump(data, sort_keys=False))
    return str(folder)


AGENT_NOT_READY = "No available agent"
AGENT_WAIT_S = 90.0


def submit(spec, address: str | None, agent_wait_s: float = AGENT_WAIT_S) -> str:
    """Submit; return the submission id.

    A cluster that has just started answers "No available agent to submit job" until its job
    agent is up (seconds after `ray start`); that answer is retried for up to `agent_wait_s`,
    every other error is raised at once."""
    jobs = client(address)
    working_dir = stage(spec)
    submission_id = f"corpusmill-{spec.job_id}-{int(time.time())}"
    deadline = time.monotonic() + agent_wait_s
    try:
        while True:
            try:
                return jobs.submit_job(
                    entrypoint=f"python -m corpusmill.jobs.cli run {SPEC_NAME}",
                    submission_id=submission_id,
                    runtime_env={"working_dir": working_dir},
                    metadata={"corpusmill_job_id": spec.job_id, "task": spec.describe()})
            except RuntimeError as e:
                if AGENT_NOT_READY not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise JobError(
                        f"the cluster at {address or '$RAY_ADDRESS'} has no job agent on its head "
                        f"node after {agent_wait_s:.0f} s, so it cannot take jobs. See "
                        f"dashboard_agent.log in the head's Ray logs; a common cause is port "
                        f"52365 already in use on the head (another Ray there): restart it with "
                        f"ray start --head --dashboard-agent-listen-port=<free port>") from None
                time.sleep(2.0)
    finally:
        shutil.rmtree(working_dir, ignore_errors=True)


def wait(address: str | None, submission_id: str, poll_s: float = 1.0,
         timeout_s: float | None = None) -> str:
    """Block until the job ends; return its final status (SUCCEEDED, FAILED, STOPPED)."""
    jobs = client(address)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(jobs.get_job_status(submission_id).value)
        if status in FINAL_STATES:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {submission_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _use_token_if_available() -> None:
    """Ray 2.60 clusters use token authentication by default; its client sends the token only
    when RAY_AUTH_MODE=token. Turn that on when a token is at hand (a cluster without
    authentication ignores it)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"
