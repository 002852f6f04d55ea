"""The same train spec, data-parallel on Ray Train: two CPU workers on the session's local Ray
(`resources.workers: 2`), checkpoints through Ray's storage in the output folder, and a model
folder as good as one trained in process."""
from __future__ import annotations

import json

import pytest

from corpusmill.jobs.cli import EXIT_OK, main
from tests.tiny_training import build_bert_base, topic_rows, write_training

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.ray]


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
    assert epochs[-1]["validation_loss"] < epochs[0]["validation_loss"]
    # three balanced topics: better than chance (the in-process test holds quality to 0.8;
    # each of the two workers takes half the batches, so this run makes half the steps)
    assert report["final_metrics"]["accuracy"] > 0.55
    assert not (output / ".corpusmill" / "training").exists()  # Ray's checkpoints went with the work folder
    predicted = pipeline("text-classification", model=str(output))(rows[0]["body"])
    assert predicted[0]["label"] in {"food", "sports", "tech"}


@pytest.mark.s3  # its own moto server, not the `s3` fixture
def test_training_into_object_storage(tmp_path):
    """An s3:// output trains through Ray Train (one worker): Ray's checkpoints and the model
    folder land in the bucket, and the work folder is gone when the model is complete."""
    from tests.integration.faults import CliRun
    from tests.object_store import BUCKET, MotoS3

    s3 = MotoS3().start()
    try:
        output = f"s3://{BUCKET}/models/topics/"
        job, _ = write_training(
            tmp_path, topic_rows(60), output=output, task="text-classification",
            model=build_bert_base(tmp_path / "base"), columns={"text": "body", "label": "topic"},
            training={"epochs": 2, "learning_rate": 1e-2, "max_tokens": 96})
        cli = CliRun(job, env=s3.env("admin"), command="train")
        assert cli.wait(timeout=600) == EXIT_OK, cli.output()[-3000:]
        assert "with Ray Train" in cli.output()
        for name in ("config.json", "model.safetensors", "tokenizer.json",
                     "training_report.json", "training_curves.png"):
            assert s3.exists(f"{output}{name}"), name
        assert not s3.exists(f"{output}.corpusmill/training")
        report = json.loads(s3.read_text(f"{output}training_report.json"))
        assert report["steps"] > 0 and report["epochs_run"] == 2
    finally:
        s3.stop()
