"""The columnar data path: token windows as flat buffers, vectorised padding, typed raw outputs,
and tokenizing inside the inference actor, each giving exactly what the row-by-row path gave."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.operators.batching import pad
from corpusmill.operators.plan import RAW, RAW_PREFIX
from corpusmill.operators.raw_outputs import OutputCollector, RawOutputs
from corpusmill.operators.windows import Windows
from tests import tiny_question_answering
from tests import tiny_token_classification as tiny_ner
from tests.corpora import job_plan, rows_in_input_order, run_operators, varied_texts

ROWS = [[[1, 2, 3], [4]], None, [[5, 6]], [[7], [8, 9], [10]], None, [[11, 12, 13, 14]]]
TYPES = [[[0, 0, 0], [1]], None, [[0, 1]], [[0], [1, 1], [0]], None, [[0, 0, 1, 1]]]


def test_windows_round_trip_through_arrow_slices_and_concatenation():
    windows = Windows.from_lists(ROWS, TYPES)
    ids, types = windows.to_arrow()
    assert ids.to_pylist() == ROWS and types.to_pylist() == TYPES
    table = pa.table({"ids": ids, "types": types})
    for part in (table.slice(1, 3), table.slice(3, 3),
                 pa.concat_tables([table.slice(0, 2), table.slice(3, 3)])):
        back = Windows.from_arrow(part.column("ids"), part.column("types"))
        assert back.to_arrow()[0].to_pylist() == part.column("ids").to_pylist()
        assert back.to_arrow()[1].to_pylist() == part.column("types").to_pylist()


@pytest.mark.parametrize("side", ["right", "left"])
def test_vectorised_padding_equals_padding_row_by_row(side):
    windows = Windows.from_lists(ROWS, TYPES)
    index = np.array([5, 0, 2, 3])
    arrays = windows.pad(index, pad_id=99, side=side)
    lists = [windows.ids[windows.offsets[w]:windows.offsets[w + 1]].tolist() for w in index]
    type_lists = [windows.type_ids[windows.offsets[w]:windows.offsets[w + 1]].tolist()
                  for w in index]
    want_ids, want_mask = pad(lists, 99, side)
    assert (arrays["input_ids"] == want_ids).all()
    assert (arrays["attention_mask"] == want_mask).all()
    assert (arrays["token_type_ids"] == pad(type_lists, 0, side)[0]).all()


def test_typed_outputs_come_back_per_row_and_window_as_the_model_gave_them():
    windows = Windows.from_lists(ROWS)
    rng = np.random.default_rng(0)
    collector = OutputCollector(windows, frozenset({"per_token"}))
    order = [np.array([4, 0, 6]), np.array([2, 1, 3, 5])]  # two micro-batches, any order
    given = {}
    for index in order:
        arrays = windows.pad(index, 0)
        mask = arrays["attention_mask"].astype(bool)
        logits = rng.normal(size=(len(index), 3)).astype(np.float32)
        per_token = rng.normal(size=(*mask.shape, 2)).astype(np.float32)
        collector.add(index, {"logits": logits, "per_token": per_token}, mask)
        for k, w in enumerate(index):
            given[int(w)] = {"logits": logits[k], "per_token": per_token[k][mask[k]]}
    valid = np.array([r is not None for r in ROWS])
    table = pa.table(collector.columns(valid))
    assert all(name.startswith(RAW_PREFIX) or name == "_cm_window_lengths"
               for name in table.column_names)
    rows = np.flatnonzero(valid)
    raw = RawOutputs(table.slice(0), rows)
    per_row = raw.per_row()
    for row, outputs in zip(rows, per_row):
        first = windows.row_offsets[row]
        assert len(outputs) == windows.row_offsets[row + 1] - first
        for k, window in enumerate(outputs):
            want = given[int(first + k)]
            assert np.array_equal(window["logits"], want["logits"])
            assert np.array_equal(window["per_token"], want["per_token"])
    assert raw.stacked("logits") is None  # some rows have several windows
    single = RawOutputs(table, np.array([2, 5]))
    assert np.array_equal(single.stacked("logits"),
                          np.stack([given[2]["logits"], given[6]["logits"]]))


def _both_ways(tmp_path, task, model, data, **settings):
    plan, corpus = job_plan(tmp_path, task, model, data, **settings)
    in_tasks = rows_in_input_order(run_operators(plan, corpus))
    in_actor = rows_in_input_order(run_operators(
        dataclasses.replace(plan, tokenize_in_actor=True), corpus))
    return in_tasks, in_actor


@pytest.mark.parametrize("task,which,options", [
    ("text-classification", "classifier", {"top_k": 3}),
    ("text-classification", "multi_label", {"top_k": 2}),
    ("feature-extraction", "encoder", {"pooling": "mean"}),
    ("zero-shot-classification", "encoder", {"candidate_labels": ["sports", "food", "money"]}),
])
def test_tokenizing_in_the_actor_writes_what_tokenize_tasks_write(tmp_path, tiny, task, which,
                                                                  options):
    texts = varied_texts(150, seed=5) + [None]
    in_tasks, in_actor = _both_ways(tmp_path, task, getattr(tiny, which), {"text": texts},
                                    options=options)
    assert in_actor == in_tasks
    assert sum(r["error"] is not None for r in in_tasks) == 1  # the null text


def test_several_windows_a_row_and_per_token_outputs_in_the_actor(tmp_path):
    ner = tiny_ner.build_bert_ner(tmp_path / "ner")
    texts = [" ".join(["the quick brown fox jumps"] * (1 + i % 40)) for i in range(60)]
    in_tasks, in_actor = _both_ways(tmp_path / "ner-job", "token-classification", ner,
                                    {"text": texts}, options={"stride": 8},
                                    batching={"max_tokens": 256, "window_rows": 32,
                                              "max_length": 32})
    assert in_actor == in_tasks and any(r["entities"] for r in in_tasks)
    qa = tiny_question_answering.build_bert_qa(tmp_path / "qa")
    data = {"question": ["what jumps?"] * 20,
            "context": [" ".join(["the quick brown fox jumps over the dog"] * (1 + 3 * i))
                        for i in range(20)]}
    in_tasks, in_actor = _both_ways(tmp_path / "qa-job", "question-answering", qa, data,
                                    batching={"max_tokens": 512, "window_rows": 16,
                                              "max_length": 48})
    assert in_actor == in_tasks and all(r["error"] is None for r in in_tasks)


def test_tasks_without_typed_outputs_keep_their_pickles(tmp_path):
    """Generated sequences have no fixed shape: they travel pickled, one per row."""
    from corpusmill.operators.infer import Infer
    from corpusmill.operators.readers.read import CorpusDatasource
    from corpusmill.operators.tokenize import tokenize_batch
    from tests.tiny_generation import build_gpt2

    model = build_gpt2(tmp_path / "gpt2")
    plan, corpus = job_plan(tmp_path, "text-generation", model,
                            {"text": ["the quick", "a great movie"]},
                            options={"max_new_tokens": 3})
    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema, None, rows_per_block=64)
    block = next(iter(next(iter(source.get_read_tasks(1))).read_fn()))
    out = Infer(plan)(tokenize_batch(block, plan))
    assert RAW in out.column_names and out.column(RAW).null_count == 0
    assert not any(name.startswith(RAW_PREFIX) for name in out.column_names)
