"""Training's pure pieces: the train spec's refusals, the validation split, label sets and
their alignment to sub-tokens, QA answer positions, token-budget batches, the report's epochs.
A tokenizer, no model, no Ray."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import yaml

from corpusmill.errors import JobError
from corpusmill.jobs.training.train_report import epoch_rows
from corpusmill.jobs.training.train_spec import load_train_spec, parse_train_spec
from corpusmill.operators.training.train_data import held_out, token_budget_batches
from corpusmill.pipelines.training import get_training_task
from corpusmill.pipelines.training.base import IGNORE, TrainingDataError
from corpusmill.pipelines.training.question_answering import check_answer
from tests.tiny_models import fast_tokenizer

BASE = {"task": "text-classification", "model": "org/model", "input": "in.parquet",
        "output": "out"}


def spec_error(**changes) -> str:
    with pytest.raises(JobError) as e:
        parse_train_spec({**BASE, **changes})
    return str(e.value)


def test_train_spec_refuses_unknown_keys_naming_the_accepted_ones():
    assert "unknown key 'epochs'" in spec_error(epochs=3) and "training" in spec_error(epochs=3)
    msg = spec_error(training={"epoch": 3})
    assert "'training.epoch'" in msg and "epochs" in msg and "learning_rate" in msg
    msg = spec_error(validation={"splt": 0.1})
    assert "'validation.splt'" in msg and "split" in msg
    msg = spec_error(options={"label": ["a", "b"]})
    assert "unknown text-classification training option 'options.label'" in msg
    assert "labels" in msg


def test_train_spec_values_are_checked():
    assert "exactly one" in spec_error(validation={"split": 0.1, "input": "v.parquet"})
    assert "validation.split" in spec_error(validation={"split": 1.5})
    assert "unknown training task 'sentiment'" in spec_error(task="sentiment")
    assert "needs validation data" in spec_error(validation=None,
                                                 training={"early_stopping_patience": 2})
    assert "src_lang" in spec_error(task="translation", options={"src_lang": "en"})


def test_train_spec_paths_resolve_against_the_file_and_set_overrides(tmp_path):
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "train.yaml"
    path.write_text(yaml.safe_dump({**BASE, "input": "data/in.parquet", "output": "../models/m",
                                    "validation": {"input": "data/val.parquet"}}))
    spec = load_train_spec(path, ["training.epochs=5", "resources.workers=2"])
    assert spec.input == str(tmp_path / "specs" / "data" / "in.parquet")
    assert spec.validation.input == str(tmp_path / "specs" / "data" / "val.parquet")
    assert spec.output == str(tmp_path / "models" / "m")
    assert spec.training.epochs == 5 and spec.resources.workers == 2
    # where it runs is not what it computes: the same training, whatever the workers
    assert spec.train_id == load_train_spec(path, ["training.epochs=5"]).train_id
    assert spec.train_id != load_train_spec(path, ["training.epochs=5",
                                                   "training.seed=1"]).train_id


def test_split_depends_on_the_id_alone():
    ids = [f"doc-{i}" for i in range(4000)]
    out = held_out(ids, 0.2, seed=0)
    assert 0.17 < out.mean() < 0.23
    # reordering and adding rows leave every row on its side
    again = held_out(ids[::-1] + ["new-1", "new-2"], 0.2, seed=0)
    assert np.array_equal(again[:4000][::-1], out)
    assert not np.array_equal(held_out(ids, 0.2, seed=1), out)


def test_token_budget_batches_hold_every_example_once_within_budget():
    lengths = np.random.default_rng(0).integers(3, 60, size=500)
    batches = token_budget_batches(lengths, max_tokens=256, seed=0)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    assert all(len(b) * lengths[b].max() <= 256 for b in batches if len(b) > 1)
    assert [b.tolist() for b in batches] == [
        b.tolist() for b in token_budget_batches(lengths, max_tokens=256, seed=0)]


def test_classification_labels_sorted_or_as_given():
    task = get_training_task("text-classification")
    task.check_types({"text": pa.string(), "label": pa.string()})
    options = task.Options()
    found = task.label_values(pa.chunked_array([["b", None, "a", "b"]]))
    assert task.label_list(found, options) == ["a", "b"]
    assert task.label_list(found, task.Options(labels=["b", "a", "c"])) == ["b", "a", "c"]
    with pytest.raises(ValueError, match="'a'"):
        task.label_list(found, task.Options(labels=["b", "c"]))
    with pytest.raises(ValueError, match="at least 2"):
        task.label_list({"a"}, options)
    kwargs = task.model_kwargs(["a", "b"], options, None)
    assert kwargs["id2label"] == {0: "a", 1: "b"} and kwargs["label2id"] == {"a": 0, "b": 1}


def test_multi_label_rows_become_multi_hot():
    task = get_training_task("text-classification")
    task.check_types({"text": pa.string(), "label": pa.list_(pa.string())})
    assert task.multi_label
    assert task.label_values(pa.chunked_array([[["x", "y"], [], ["z"]]])) == {"x", "y", "z"}
    assert task.model_kwargs(["x", "y", "z"], task.Options(), None)["problem_type"] == \
        "multi_label_classification"
    examples = task.encode(fast_tokenizer(), {"text": ["a b", "c"], "label": [["x", "z"], []]},
                           ["x", "y", "z"], task.Options(), None, 16)
    assert examples.columns["labels"] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    with pytest.raises(TrainingDataError, match="'w'"):
        task.encode(fast_tokenizer(), {"text": ["a"], "label": [["w"]]}, ["x", "y", "z"],
                    task.Options(), None, 16)


def test_tags_align_to_the_first_sub_token_of_each_word():
    tokenizer = fast_tokenizer()
    task = get_training_task("token-classification")
    task.check_types({"tokens": pa.list_(pa.string()), "tags": pa.list_(pa.string())})
    labels = task.label_list({"O", "B-PER", "I-PER", "B-LOC"}, task.Options())
    assert labels == ["O", "B-LOC", "B-PER", "I-PER"]
    words = ["telescopes", "observed", "the", "galaxies"]
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    examples = task.encode(tokenizer, {"tokens": [words], "tags": [tags]}, labels,
                           task.Options(), None, 64)
    enc = tokenizer(words, is_split_into_words=True)
    expected, previous = [], None
    for word in enc.word_ids():
        expected.append(IGNORE if word is None or word == previous else labels.index(tags[word]))
        previous = word
    assert examples.columns["labels"] == [expected]
    assert expected.count(IGNORE) > 2  # special tokens and continuation sub-tokens
    with pytest.raises(TrainingDataError, match="4 tokens but 3 tags"):
        task.encode(tokenizer, {"tokens": [words], "tags": [tags[:3]]}, labels, task.Options(),
                    None, 64)


def test_spans_tag_the_words_they_cover_and_long_rows_count_each_word_once():
    tokenizer = fast_tokenizer()
    task = get_training_task("token-classification")
    struct = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())])
    task.check_types({"text": pa.string(), "entities": pa.list_(struct)})
    assert task.label_field == "entities"
    text = "the senate passed the budget bill"
    spans = [{"start": 4, "end": 10, "label": "ORG"}, {"start": 22, "end": 33, "label": "LAW"}]
    found = task.label_values(pa.chunked_array([[spans]], pa.list_(struct)))
    labels = task.label_list(found, task.Options())
    assert labels == ["O", "B-LAW", "I-LAW", "B-ORG", "I-ORG"]
    rows = {"text": [text], "entities": [spans]}
    whole = task.encode(tokenizer, rows, labels, task.Options(), None, 64)
    tagged = [labels[i] for i in whole.columns["labels"][0] if i != IGNORE]
    assert tagged == ["O", "B-ORG", "O", "O", "B-LAW", "I-LAW"]
    # cut into windows of 6 tokens overlapping by 2: the same tags, each word once
    windows = task.encode(tokenizer, rows, labels, task.Options(stride=2), None, 6)
    assert len(windows.columns["labels"]) > 1 and set(windows.rows) == {0}
    assert [labels[i] for w in windows.columns["labels"] for i in w if i != IGNORE] == tagged
    with pytest.raises(TrainingDataError, match="not a span"):
        task.encode(tokenizer, {"text": [text], "entities": [[{"start": 30, "end": 99,
                                                               "label": "X"}]]},
                    labels, task.Options(), None, 64)


def test_qa_answer_positions_point_at_the_answer_tokens_or_cls():
    tokenizer = fast_tokenizer(model_max_length=256)
    task = get_training_task("question-answering")
    context = "the senate passed the budget bill after a long debate in the senate hall"
    start = context.index("budget bill")
    rows = {"question": ["what did the senate pass"], "context": [context],
            "answer_text": ["budget bill"], "answer_start": [start]}
    one = task.encode(tokenizer, rows, None, task.Options(), None, 256)
    s, e = one.columns["start_positions"][0], one.columns["end_positions"][0]
    ids = one.columns["input_ids"][0]
    assert tokenizer.decode(ids[s:e + 1]) == "budget bill"
    # short windows: the windows holding the whole answer point at it, the others at CLS (0)
    many = task.encode(tokenizer, rows, None, task.Options(max_seq_len=18, doc_stride=2),
                       None, 256)
    pairs = list(zip(many.columns["start_positions"], many.columns["end_positions"]))
    assert len(pairs) > 2 and (0, 0) in pairs
    answered = [(w, s, e) for w, (s, e) in enumerate(pairs) if s]
    assert answered and all(tokenizer.decode(many.columns["input_ids"][w][s:e + 1])
                            == "budget bill" for w, s, e in answered)
    with pytest.raises(TrainingDataError, match="it occurs at 22"):
        check_answer(0, context, "budget bill", start + 1)


def test_epoch_rows_pair_training_loss_with_validation_metrics():
    history = [{"loss": 2.0, "epoch": 1.0, "step": 5},
               {"eval_loss": 1.5, "eval_macro_f1": 0.4, "eval_runtime": 0.1, "epoch": 1.0,
                "step": 5},
               {"loss": 1.0, "epoch": 2.0, "step": 10},
               {"eval_loss": 1.2, "eval_macro_f1": 0.6, "epoch": 2.0, "step": 10},
               {"train_runtime": 3.0, "epoch": 2.0, "step": 10},
               {"eval_loss": 1.5, "eval_macro_f1": 0.4, "epoch": 2.0, "step": 10}]
    assert epoch_rows(history) == [
        {"step": 5, "epoch": 1.0, "training_loss": 2.0, "validation_loss": 1.5,
         "validation_macro_f1": 0.4},
        {"step": 10, "epoch": 2.0, "training_loss": 1.0, "validation_loss": 1.2,
         "validation_macro_f1": 0.6}]
