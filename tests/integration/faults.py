"""Helpers for fault-injection tests: run the CLI as a separate process with its own local Ray,
kill it at a moment chosen by progress, and clean up only that Ray instance (the CLI's process
tree, and processes carrying its own Ray temp dir)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests import processes
from tests.conftest import write_job

REPO = Path(__file__).parents[2]


def job_file(folder: Path, model: str, corpus: Path, name: str, **extra) -> Path:
    """The fault tests' job: text classification of the corpus' `body` column into
    `folder/name`, in windows of 50 rows (many blocks, so a fault lands mid-job)."""
    return write_job(folder / f"{name}.yaml", task="text-classification", model=model,
                     input=str(corpus), output=str(folder / name), columns={"text": "body"},
                     batching={"window_rows": 50, "max_tokens": 2048}, **extra)


def data_files(output: Path) -> list[Path]:
    return sorted(output.glob("*.parquet")) if output.exists() else []


def committed_rows(output: Path) -> int:
    total = 0
    for f in data_files(output):
        try:
            total += pq.read_metadata(f).num_rows
        except Exception:  # noqa: BLE001 - a file being written right now
            pass
    return total


class CliRun:
    """`corpusmill run JOB` (or another `command`, e.g. train) in its own process group with
    its own Ray temp dir (a local Ray, unless `env` names a cluster with RAY_ADDRESS)."""

    def __init__(self, job: Path, *args: str, env: dict | None = None, command: str = "run"):
        self.ray_tmp = tempfile.mkdtemp(prefix="cmray")  # short: Ray's socket paths are limited
        base = {**os.environ, "RAY_TMPDIR": self.ray_tmp, "PYTHONUNBUFFERED": "1"}
        base.pop("RAY_ADDRESS", None)
        env = {**base, **(env or {})}
        self.log = Path(self.ray_tmp) / "cli.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corpusmill.jobs.cli", command, str(job), *args], cwd=REPO,
            env=env,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def kill_when(self, predicate, timeout: float = 120) -> bool:
        """SIGKILL the whole process group once `predicate()` holds; False if it ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if predicate():
                self.kill()
                return True
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"the kill point was never reached; log:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        started = processes.tree(self.proc.pid)  # before the kill orphans them
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        processes.kill(started)
        self._reap_ray()

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._reap_ray()

    def output(self) -> str:
        return self.log.read_text()

    def _reap_ray(self) -> None:
        """Ray's services die with their driver (PR_SET_PDEATHSIG); wait for that, then kill
        any straggler of this instance only (its temp dir on the command line, and its
        descendants)."""
        for _ in range(100):
            if not processes.marked(self.ray_tmp):
                return
            time.sleep(0.1)
        processes.kill(processes.marked(self.ray_tmp))
