"""Parity with transformers' own text-classification pipeline on the same model and inputs:
same label for every row, scores within 1e-4, over 300 varied rows (empty, emoji/CJK, a
5,000-word text that must be truncated, duplicates)."""
from __future__ import annotations


import pytest
from transformers import pipeline

from tests.corpora import run_task, varied_texts

TEXTS = varied_texts(300)


def run_ours(tmp_path, model, **options):
    return run_task(tmp_path, "text-classification", model, {"text": TEXTS}, options=options,
                    torch_threads=2)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["classifier", "distilbert", "multi_label"])
def test_top1_label_and_score_match_pipeline(tmp_path, tiny, which):
    model = getattr(tiny, which)
    reference = pipeline("text-classification", model=model, truncation=True)
    ours = run_ours(tmp_path, model)
    assert len(ours) == 300
    assert len({row["label"] for row in ours}) >= 2, "a model giving one label proves little"
    for text, row in zip(TEXTS, ours):
        expected = reference(text)[0]
        assert row["error"] is None
        assert row["label"] == expected["label"], text[:80]
        assert row["score"] == pytest.approx(expected["score"], abs=1e-4)
        assert row["labels"] == [{"label": row["label"], "score": row["score"]}]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["classifier", "multi_label"])
def test_top_k_matches_pipeline(tmp_path, tiny, which):
    model = getattr(tiny, which)
    reference = pipeline("text-classification", model=model, truncation=True)
    ours = run_ours(tmp_path, model, top_k=3)
    for text, row in zip(TEXTS, ours):
        expected = reference(text, top_k=3)
        assert [p["label"] for p in row["labels"]] == [e["label"] for e in expected], text[:80]
        for got, want in zip(row["labels"], expected):
            assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert (row["label"], row["score"]) == (row["labels"][0]["label"], row["labels"][0]["score"])


def test_function_to_apply_none_gives_raw_logits_like_pipeline(tmp_path, tiny):
    reference = pipeline("text-classification", model=tiny.classifier, truncation=True)
    ours = run_ours(tmp_path, tiny.classifier, top_k=3, function_to_apply="none")
    for text, row in list(zip(TEXTS, ours))[:50]:
        expected = reference(text, top_k=3, function_to_apply="none")
        assert [p["label"] for p in row["labels"]] == [e["label"] for e in expected]
        for got, want in zip(row["labels"], expected):
            assert got["score"] == pytest.approx(want["score"], abs=1e-4)
