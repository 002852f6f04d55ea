"""Per-row data errors: a bad row never takes the job or its batch-mates down (on_error:
record), is left out and counted (skip), or stops the job naming the row (raise)."""
from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from transformers import pipeline

from corpusmill.errors import RowError
from corpusmill.jobs.preflight import preflight
from corpusmill.spec import parse_spec
from corpusmill.pipelines.text_classification import TextClassification
from tests.conftest import write_parquet
from tests.corpora import WORDS, run_operators


def plan_for(tmp_path, model, columns: dict, **spec):
    path = write_parquet(tmp_path / "in" / "corpus.parquet", columns)
    plan, corpus = preflight(parse_spec({
        "task": "text-classification", "model": model, "input": str(path),
        "output": str(tmp_path / "out"), "batching": {"max_tokens": 4096, "window_rows": 64},
        **spec}))
    return dataclasses.replace(plan, torch_threads=2), corpus


def by_id(table: pa.Table) -> dict:
    return {r["row_id"]: r for r in table.to_pylist()}


@pytest.fixture
def poisoned_forward(monkeypatch, tiny):
    """A forward pass that raises whenever its batch holds an [UNK] token (from '☠')."""
    from transformers import AutoTokenizer

    unk = AutoTokenizer.from_pretrained(tiny.classifier).unk_token_id
    real = TextClassification.forward

    def forward(self, model, tensors, state, options):
        if (tensors["input_ids"] == unk).any():
            raise RuntimeError("poisoned batch")
        return real(self, model, tensors, state, options)
    monkeypatch.setattr(TextClassification, "forward", forward)


def clean_texts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 9)) for i in range(n)]


@pytest.mark.slow
def test_poisonous_row_is_isolated_from_its_batch(tmp_path, tiny, poisoned_forward):
    texts = clean_texts(60)
    texts[17] = "great movie ☠ terrible ending"
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": texts})
    rows = by_id(run_operators(plan, corpus))
    reference = pipeline("text-classification", model=tiny.classifier, truncation=True)
    assert len(rows) == 60
    for i, text in enumerate(texts):
        row = rows[f"corpus.parquet:{i}"]
        if i == 17:
            assert row["error"] == "inference failed: RuntimeError: poisoned batch"
            assert row["label"] is None and row["labels"] is None
        else:
            assert row["error"] is None
            assert row["label"] == reference(text)[0]["label"]


def test_poisonous_row_under_raise_names_the_row(tmp_path, tiny, poisoned_forward):
    texts = clean_texts(20)
    texts[5] = "☠"
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": texts}, on_error="raise")
    with pytest.raises(RowError, match=r"row row_id='corpus.parquet:5': inference failed"):
        run_operators(plan, corpus)


def test_null_row_under_raise_names_the_row(tmp_path, tiny):
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": ["ok", None]}, on_error="raise")
    with pytest.raises(RowError, match=r"row_id='corpus.parquet:1': column 'text' is null"):
        run_operators(plan, corpus)


def test_skip_leaves_error_rows_out(tmp_path, tiny):
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": ["ok", None, "fine"]},
                            on_error="skip")
    rows = by_id(run_operators(plan, corpus))
    assert sorted(rows) == ["corpus.parquet:0", "corpus.parquet:2"]


def test_empty_and_whitespace_text_are_valid_rows(tmp_path, tiny):
    texts = ["", " ", "\n\t  "]
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": texts})
    rows = by_id(run_operators(plan, corpus))
    reference = pipeline("text-classification", model=tiny.classifier, truncation=True)
    for i, text in enumerate(texts):
        row = rows[f"corpus.parquet:{i}"]
        assert row["error"] is None and row["label"] == reference(text)[0]["label"]


def test_one_megabyte_text_is_truncated_not_fatal(tmp_path, tiny):
    huge = ("the market fell sharply " * 45_000)[:1_000_000]
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": ["short text", huge]})
    rows = by_id(run_operators(plan, corpus))
    reference = pipeline("text-classification", model=tiny.classifier, truncation=True)
    row = rows["corpus.parquet:1"]
    assert row["error"] is None
    assert row["label"] == reference(huge)[0]["label"]
    assert row["score"] == pytest.approx(reference(huge)[0]["score"], abs=1e-4)


def test_binary_column_with_invalid_utf8_is_a_row_error(tmp_path, tiny):
    values = [b"caf\xc3\xa9 au lait", b"bad \xff\xfe bytes", None, "plain".encode()]
    plan, corpus = plan_for(tmp_path, tiny.classifier, {"text": pa.array(values, pa.binary())})
    rows = by_id(run_operators(plan, corpus))
    reference = pipeline("text-classification", model=tiny.classifier, truncation=True)
    assert rows["corpus.parquet:0"]["label"] == reference("café au lait")[0]["label"]
    assert rows["corpus.parquet:1"]["error"].startswith(
        "column 'text' is not valid UTF-8 (byte 4: b'\\xff\\xfe b')")
    assert rows["corpus.parquet:2"]["error"] == "column 'text' is null"
    assert rows["corpus.parquet:3"]["error"] is None
    assert rows["corpus.parquet:1"]["text"] == b"bad \xff\xfe bytes"  # kept as it was
