"""The same train spec, data-parallel on Ray Train: two CPU workers on the session's local Ray
(`resources.workers: 2`), checkpoints through Ray's storage in the output folder, and a model
folder as good as one trained in process."""
from __future__ import annotations

import json

from corpusmill.jobs.cli import EXIT_OK, main
from tests.tiny_training import build_bert_base, topic_rows, write_training


def test_two_ray_train_workers(tmp_path, ray_session, capsys):
    from transformers import pipeline

    base = build_bert_base(tmp_path / "base")
    rows = topic_rows(90)
    job, output = write_training(
        tmp_path, rows, task="text-classification", model=base,
        columns={"text": "body", "label": "topic"},
        training={"epochs": 8, "learning_rate": 1e-2, "max_tokens": 48},
        # the session's Ray has 2 CPUs: half a CPU each leaves room for Ray Train's own actors
        resources={"workers": 2, "cpus_per_worker": 0.5})
    assert main(["train", str(job)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "on 2 worker(s) with Ray Train" in out
    report = json.loads((output / "training_report.json").read_text())
    assert report["workers"] == 2 and report["device"] == "cpu"
    epochs = report["epochs"]
    assert len(epochs) == 8 and epochs[-1]["training_loss"] < epochs[0]["training_loss"]
    assert report["final_metrics"]["accuracy"] > 0.8
    assert not (output / "_training").exists()  # Ray's checkpoints went with the work folder
    predicted = pipeline("text-classification", model=str(output))(rows[0]["body"])
    assert predicted[0]["label"] in {"food", "sports", "tech"}
