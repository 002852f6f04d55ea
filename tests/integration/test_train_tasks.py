"""`corpusmill train` for every trainable task on tiny bases: the training loss falls, the
folder holds a model with its label maps, report and curves, and the folder is a model that
`corpusmill run`'s operators take as it is (and transformers' pipeline, where transformers 5
still has one). Training runs in this process (one worker); the run of the classifier goes
through the CLI on the session's Ray."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_INVALID, EXIT_OK, main
from corpusmill.jobs.preflight import preflight
from corpusmill.spec import parse_spec
from tests.conftest import write_job
from tests.corpora import run_operators
from tests.tiny_training import (
    TOPICS, build_bert_base, build_t5_base, pair_rows, qa_rows, tagged_rows, topic_rows,
    write_training,
)

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {"bert": build_bert_base(root / "bert", max_length=128),
            "t5": build_t5_base(root / "t5")}


def train(tmp_path: Path, rows: list[dict], **spec) -> tuple[Path, dict]:
    """Train through the CLI on `rows`; (model folder, report)."""
    job, output = write_training(
        tmp_path, rows,
        **{"training": {"epochs": 8, "learning_rate": 1e-2, "max_tokens": 96}, **spec})
    assert main(["train", str(job)]) == EXIT_OK
    return output, json.loads((output / "training_report.json").read_text())


def assert_trained(folder: Path, report: dict) -> None:
    epochs = report["epochs"]
    assert len(epochs) >= 2
    assert epochs[-1]["training_loss"] < epochs[0]["training_loss"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_report.json",
            "training_curves.png"} <= {p.name for p in folder.iterdir()}
    assert not (folder / ".corpusmill" / "training").exists()
    assert (folder / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    provenance = report["provenance"]
    assert provenance["data_fingerprint"] and provenance["seed"] == 0
    assert report["data"]["train"]["rows"] + report["data"]["validation"]["rows"] == \
        report["data"]["rows_read"] - report["data"]["rows_skipped_null"]


def run_task(tmp_path: Path, task: str, model: Path, columns: dict, **options) -> list[dict]:
    """The trained folder through corpusmill run's preflight and operators (no Ray)."""
    spec = parse_spec({"task": task, "model": str(model), "input": str(tmp_path / "data"),
                       "output": str(tmp_path / "run"), "columns": columns,
                       "id_column": "doc_id", "keep_columns": [], "options": options})
    plan, corpus = preflight(spec, load_weights=True)
    return run_operators(dataclasses.replace(plan, torch_threads=2), corpus).to_pylist()


def test_text_classification_trains_and_annotates(tmp_path, bases, ray_session, capsys):
    from transformers import pipeline

    rows = topic_rows(90)
    rows[3]["topic"] = None  # not labelled yet: left out, counted
    folder, report = train(tmp_path, rows, task="text-classification", model=bases["bert"],
                           columns={"text": "body", "label": "topic"})
    assert_trained(folder, report)
    assert report["data"]["rows_skipped_null"] == 1
    labels = sorted(TOPICS)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(labels)}
    assert report["labels"] == labels
    assert report["final_metrics"]["accuracy"] > 0.8  # the words decide the topic
    assert report["final_details"]["confusion_matrix"]["labels"] == labels
    first = capsys.readouterr().out
    assert "validation (macro_f1" in first

    # the same command again: already finished, nothing redone
    job = tmp_path / "train.yaml"
    assert main(["train", str(job)]) == EXIT_OK
    assert "already finished" in capsys.readouterr().out

    # the folder is a model corpusmill run takes directly, as transformers' pipeline does
    out = tmp_path / "annotated"
    run_job = write_job(tmp_path / "run.yaml", task="text-classification", model=str(folder),
                        input=str(tmp_path / "data"), output=str(out), id_column="doc_id",
                        columns={"text": "body"}, keep_columns=["topic"])
    assert main(["run", str(run_job)]) == EXIT_OK
    annotated = pq.read_table(out).to_pylist()
    reference = pipeline("text-classification", model=str(folder))
    predicted = reference([r["body"] for r in rows])
    by_id = {r["doc_id"]: r for r in annotated}
    assert len(by_id) == len(rows)
    for row, expected in zip(rows, predicted):
        assert by_id[row["doc_id"]]["label"] == expected["label"]
        assert by_id[row["doc_id"]]["score"] == pytest.approx(expected["score"], abs=1e-4)
    labelled = [r for r in annotated if r["topic"] is not None]
    assert sum(r["label"] == r["topic"] for r in labelled) / len(labelled) > 0.8


def test_multi_label_classification_from_list_columns(tmp_path, bases):
    rows = topic_rows(60, seed=1)
    for i, row in enumerate(rows):
        row["topics"] = [row["topic"]] + (["quick"] if "quick" in row["body"] else [])
    folder, report = train(tmp_path, rows, task="text-classification", model=bases["bert"],
                           columns={"text": "body", "label": "topics"},
                           training={"epochs": 3, "learning_rate": 3e-3, "max_tokens": 128})
    assert_trained(folder, report)
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert set(config["label2id"]) == set(TOPICS) | {"quick"}
    assert {"subset_accuracy", "micro_f1", "macro_f1"} <= set(report["final_metrics"])
    out = run_task(tmp_path, "text-classification", folder, {"text": "body"}, top_k=4)
    assert all(len(r["labels"]) == 4 and 0 <= r["score"] <= 1 for r in out)


@pytest.mark.parametrize("gold", ["tags", "spans"])
def test_token_classification_from_tags_or_spans(tmp_path, bases, gold):
    from transformers import pipeline

    columns = ({"tokens": "words", "tags": "tags"} if gold == "tags"
               else {"text": "text", "entities": "spans"})
    folder, report = train(tmp_path, tagged_rows(80), task="token-classification",
                           model=bases["bert"], columns=columns,
                           training={"epochs": 5, "learning_rate": 5e-3, "max_tokens": 192,
                                     "max_length": 12})
    assert_trained(folder, report)
    tags = ["O", "B-LOC", "I-LOC", "B-PER"] + ([] if gold == "tags" else ["I-PER"])
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {str(i): t for i, t in enumerate(tags)} == \
        {str(i): t for i, t in enumerate(report["labels"])}
    assert report["final_metrics"]["f1"] > 0.5
    # rows longer than 12 tokens became several windows
    assert report["data"]["train"]["examples"] > report["data"]["train"]["rows"]
    entities = pipeline("token-classification", model=str(folder))("the fox went to the beach")
    assert {e["entity"] for e in entities} <= set(tags)
    out = run_task(tmp_path, "token-classification", folder, {"text": "text"},
                   aggregation_strategy="first")
    found = [e for r in out for e in r["entities"]]
    assert found and {e["entity"] for e in found} <= {"PER", "LOC"}


def test_question_answering_with_windows(tmp_path, bases):
    rows = qa_rows(80)
    folder, report = train(tmp_path, rows, task="question-answering", model=bases["bert"],
                           columns={"answer_text": "answer"},
                           options={"max_seq_len": 32, "doc_stride": 8},
                           training={"epochs": 4, "learning_rate": 3e-3, "max_tokens": 1024})
    assert_trained(folder, report)
    # long contexts: several windows per question, as inference windows them
    assert report["data"]["train"]["examples"] > 2 * report["data"]["train"]["rows"]
    assert {"exact_match", "f1"} <= set(report["final_metrics"])
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]
    out = run_task(tmp_path, "question-answering", folder, {}, max_seq_len=32, doc_stride=8)
    assert len(out) == len(rows) and all(r["error"] is None for r in out)
    by_id = {r["doc_id"]: r for r in rows}
    for r in out:  # every answer is a span of its own context
        assert by_id[r["doc_id"]]["context"][r["start"]:r["end"]] == r["answer"]


def test_summarization_keeps_the_t5_prefix(tmp_path, bases):
    folder, report = train(tmp_path, pair_rows(60), task="summarization", model=bases["t5"],
                           columns={"text": "text", "target": "target"},
                           training={"epochs": 4, "learning_rate": 1e-2, "max_tokens": 256})
    assert_trained(folder, report)
    assert report["validation_metric"] == "loss"
    # the kept model generated for the validation rows, scored with ROUGE
    final = report["final_metrics"]
    assert final["scored_rows"] == report["data"]["validation"]["rows"]
    assert 0 <= final["rouge1"] <= 1 and "detail" in report["final_details"]
    config = json.loads((folder / "config.json").read_text())
    assert config["task_specific_params"]["summarization"]["prefix"] == "summarize: "
    out = run_task(tmp_path, "summarization", folder, {"text": "text"}, max_new_tokens=8)
    assert len(out) == 60 and all(isinstance(r["summary_text"], str) for r in out)


def test_fill_mask_continued_pretraining(tmp_path, bases):
    from transformers import pipeline

    rows = [{"doc_id": r["doc_id"], "body": " ".join([r["text"]] * 3),
             "masked": r["text"].replace(r["text"].split()[1], "[MASK]", 1)}
            for r in pair_rows(60)]
    folder, report = train(tmp_path, rows, task="fill-mask", model=bases["bert"],
                           columns={"text": "body"},
                           training={"epochs": 3, "learning_rate": 3e-3, "max_tokens": 384,
                                     "max_length": 32})
    assert_trained(folder, report)
    final = report["final_metrics"]
    assert final["perplexity"] == pytest.approx(2.718281828 ** final["loss"], rel=1e-6)
    losses = [e["validation_loss"] for e in report["epochs"]]
    assert losses[-1] < losses[0]
    assert len(pipeline("fill-mask", model=str(folder))("the [MASK] rates")) == 5
    out = run_task(tmp_path, "fill-mask", folder, {"text": "masked"})
    assert len(out) == 60 and all(r["error"] is None for r in out)


def test_example_train_spec_is_ready_to_run():
    """The demo's train spec: its fields, labels and split fit the sample corpus (training it
    takes minutes: bench/train_topics_demo.py measures it)."""
    from corpusmill.jobs.training.train import preflight_training
    from corpusmill.jobs.training.train_spec import load_train_spec
    from corpusmill.operators.training.train_data import held_out

    examples = Path(__file__).parents[2] / "jobs" / "examples"
    spec = load_train_spec(examples / "train_topics_minilm.yaml")
    setup = preflight_training(spec)
    topics = set(pq.read_table(examples / "data" / "articles.parquet").column("topic").to_pylist())
    assert setup.labels == spec.task_options.labels and set(setup.labels) == topics
    assert setup.train.fields == {"text": "body", "label": "topic"}
    ids = pq.read_table(examples / "data" / "articles.parquet").column("article_id").to_pylist()
    assert held_out(ids, spec.validation.split, spec.validation.seed).sum() == 71


def refusal(tmp_path, capsys, rows, **spec) -> str:
    job, output = write_training(tmp_path, rows, **spec)
    assert main(["train", str(job)]) == EXIT_INVALID
    assert not (Path(output) / ".corpusmill" / "training" / "checkpoints").exists()  # refused before training
    return capsys.readouterr().err


def test_training_refusals_name_the_row_or_key_and_the_fix(tmp_path, bases, capsys):
    topics = topic_rows(20)
    msg = refusal(tmp_path / "a", capsys, topics, task="text-classification",
                  model=bases["bert"])
    assert "reads the fields (text, label)" in msg and "columns present: body, doc_id, topic" \
        in msg
    scored = [{**r, "score": 0.5} for r in topics]
    msg = refusal(tmp_path / "b", capsys, scored, task="text-classification",
                  model=bases["bert"], columns={"text": "body", "label": "score"})
    assert "labels must be strings" in msg and "double" in msg
    qa = qa_rows(10)
    qa[4]["answer_start"] += 1
    msg = refusal(tmp_path / "c", capsys, qa, task="question-answering", model=bases["bert"],
                  columns={"answer_text": "answer"}, validation=None)
    assert f"row {qa[4]['doc_id']!r}: answer_text {qa[4]['answer']!r} is not at answer_start" \
        in msg and "it occurs at" in msg
    tagged = tagged_rows(10)
    tagged[2]["tags"] = tagged[2]["tags"][:-1]
    msg = refusal(tmp_path / "d", capsys, tagged, task="token-classification",
                  model=bases["bert"], columns={"tokens": "words"}, validation=None)
    assert f"row {tagged[2]['doc_id']!r}" in msg and "give one tag per token" in msg
    msg = refusal(tmp_path / "e", capsys, pair_rows(10), task="summarization",
                  model=bases["bert"])
    assert "needs an encoder-decoder base model" in msg
    (tmp_path / "f" / "model").mkdir(parents=True)
    (tmp_path / "f" / "model" / "notes.txt").write_text("mine")
    msg = refusal(tmp_path / "f", capsys, topics, task="text-classification",
                  model=bases["bert"], columns={"text": "body", "label": "topic"})
    assert "holds files corpusmill did not train (notes.txt)" in msg
