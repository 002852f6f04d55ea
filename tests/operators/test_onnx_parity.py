"""The onnxruntime backend gives what the torch backend gives (whose parity with transformers
the other tests in this folder show): every single-forward task on tiny random models, labels,
tokens and spans equal, scores within 1e-4, including texts split into several windows
(token-classification with a stride, question answering over long contexts, NLI pairs)."""
from __future__ import annotations

import random

import pytest

from tests import tiny_fill_mask, tiny_nli, tiny_question_answering
from tests import tiny_token_classification as tiny_ner
from tests.conftest import write_parquet
from tests.corpora import WORDS, assert_same_rows, run_on_both_engines, varied_texts

TEXTS = varied_texts(160, seed=11)
LABELS = ["sports", "money and business", "food and cooking"]


pytestmark = pytest.mark.usefixtures("module_graph_cache")  # graphs exported once per model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-models")
    return {"ner-bert": tiny_ner.build_bert_ner(root / "ner-bert"),
            "ner-distilbert": tiny_ner.build_distilbert_ner(root / "ner-distilbert"),
            "qa-bert": tiny_question_answering.build_bert_qa(root / "qa-bert"),
            "mlm-bert": tiny_fill_mask.build_bert_mlm(root / "mlm-bert"),
            "mlm-roberta": tiny_fill_mask.build_roberta_mlm(root / "mlm-roberta"),
            "nli-bert": tiny_nli.build_bert_nli(root / "nli-bert"),
            "nli-distilbert": tiny_nli.build_distilbert_nli(root / "nli-distilbert")}


def both(tmp_path, task, model, texts=TEXTS, columns=None, **options):
    data = columns or {"text": texts}
    path = write_parquet(tmp_path / "in" / "corpus.parquet", data)
    spec = {"task": task, "model": model, "input": str(path), "output": str(tmp_path / "out"),
            "options": options, "batching": {"max_tokens": 512, "window_rows": 48}}
    if columns:
        spec["columns"] = {name: name for name in columns}
    torch_rows, onnx_rows = run_on_both_engines(spec)
    assert sum(r["error"] is None for r in torch_rows) >= 0.8 * len(torch_rows)
    assert_same_rows(onnx_rows, torch_rows)
    return torch_rows


@pytest.mark.parametrize("which,options", [("classifier", {"top_k": 3}),
                                           ("distilbert", {}),
                                           ("multi_label", {"top_k": 2})])
def test_text_classification(tmp_path, tiny, which, options):
    rows = both(tmp_path, "text-classification", getattr(tiny, which), **options)
    assert len({r["label"] for r in rows}) >= 2


@pytest.mark.parametrize("which,strategy", [("ner-bert", "simple"), ("ner-distilbert", "none")])
def test_token_classification_over_several_windows(tmp_path, models, which, strategy):
    rows = both(tmp_path, "token-classification", models[which],
                aggregation_strategy=strategy, stride=8)
    assert sum(len(t.split()) > 60 for t in TEXTS) >= 20, "rows that need several windows"
    assert sum(len(r["entities"] or []) for r in rows) > 500


def qa_columns(n: int = 70, seed: int = 3) -> dict:
    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    questions = [words(rng.randint(1, 8)) + "?" for _ in range(n)]
    contexts = [words(rng.choice([3, 20, 60, 150, 400])) for _ in range(n)]
    return {"question": questions, "context": contexts}


def test_question_answering_over_long_contexts(tmp_path, models):
    columns = qa_columns()
    rows = both(tmp_path, "question-answering", models["qa-bert"], columns=columns,
                top_k=2, max_seq_len=48, doc_stride=16)
    assert sum(len(c.split()) >= 60 for c in columns["context"]) >= 20, "several windows"
    assert len({r["answer"] for r in rows}) >= 20


def masked(texts, mask):
    return [" ".join(t.split()[:5] + [mask] + t.split()[5:40] + [mask] * (i % 2))
            for i, t in enumerate(texts)]


@pytest.mark.parametrize("which,mask,options", [
    ("mlm-bert", "[MASK]", {"top_k": 3}),
    ("mlm-roberta", "<mask>", {"top_k": 2, "targets": ["the", "fox", "bank", "market"]}),
])
def test_fill_mask(tmp_path, models, which, mask, options):
    rows = both(tmp_path, "fill-mask", models[which], texts=masked(TEXTS, mask), **options)
    assert any(len(r["predictions"] or []) == 2 * options["top_k"] for r in rows), "two masks"


@pytest.mark.parametrize("which,options", [("encoder", {}),
                                           ("encoder", {"pooling": "cls", "normalize": True}),
                                           ("distilbert", {"pooling": "max"})])
def test_feature_extraction(tmp_path, tiny, which, options):
    both(tmp_path, "feature-extraction", getattr(tiny, which), **options)


@pytest.mark.parametrize("which,options", [("nli-bert", {}),
                                           ("nli-distilbert", {"multi_label": True})])
def test_zero_shot_nli(tmp_path, models, which, options):
    both(tmp_path, "zero-shot-classification", models[which], candidate_labels=LABELS,
         hypothesis_template="This text is about {}.", **options)


def test_zero_shot_embedding_similarity(tmp_path, tiny):
    both(tmp_path, "zero-shot-classification", tiny.encoder, candidate_labels=LABELS,
         mode="embedding-similarity")


def test_bert_graph_runs_fused_and_equal(tmp_path, tiny):
    """A BERT classifier's graph is served with onnxruntime's transformer fusions (one
    Attention kernel per layer), and still gives torch's outputs."""
    import json
    import os

    from corpusmill.operators.loading import cache_root

    both(tmp_path, "text-classification", tiny.classifier, top_k=3)
    infos = [json.load(open(os.path.join(cache_root("onnx"), name, "graph.json")))
             for name in os.listdir(cache_root("onnx")) if not name.startswith(".")]
    fused = [i for i in infos if i.get("model_ref") == tiny.classifier
             and i.get("task") == "text-classification"]
    assert fused and all(i["fusions"].get("Attention", 0) >= 1 for i in fused), fused
