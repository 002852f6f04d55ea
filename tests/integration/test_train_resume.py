"""A training killed mid-way (SIGKILL, as a lost machine kills it) restarts from its last
checkpoint with the same command and finishes the planned steps; a finished one says so."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.faults import REPO, CliRun
from tests.tiny_training import build_bert_base, topic_rows, write_training

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def complete_checkpoints(output) -> list[int]:
    """Steps of the checkpoints whose trainer state (written last) exists."""
    folder = output / ".corpusmill" / "training" / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.rsplit("-", 1)[1]) for p in folder.glob("checkpoint-*")
                  if (p / "trainer_state.json").is_file())


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    base = build_bert_base(tmp_path / "base")
    job, output = write_training(
        tmp_path, topic_rows(80), task="text-classification", model=base,
        columns={"text": "body", "label": "topic"},
        training={"epochs": 4, "learning_rate": 3e-3, "max_tokens": 64, "eval_steps": 6})

    first = CliRun(job, command="train")
    assert first.kill_when(lambda: len(complete_checkpoints(output)) >= 1, timeout=300), \
        first.output()
    done_before = complete_checkpoints(output)[-1]

    rerun = subprocess.run([sys.executable, "-m", "corpusmill.jobs.cli", "train", str(job)],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from checkpoint-{done_before} (step {done_before})" in rerun.stdout
    report = json.loads((output / "training_report.json").read_text())
    steps = [e["step"] for e in report["epochs"]]
    # the log runs on from the first run's evaluations, once each, and every planned step ran
    assert steps[0] == 6 <= done_before and steps == sorted(set(steps))
    assert steps == list(range(6, report["steps"] + 1, 6))
    assert report["epochs_run"] == 4 and not report["stopped_early"]
    assert not (output / ".corpusmill" / "training").exists()

    again = subprocess.run([sys.executable, "-m", "corpusmill.jobs.cli", "train", str(job)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stdout
