"""zero-shot-classification, mode nli, against transformers' own zero-shot-classification
pipeline on the same tiny NLI-shaped classifiers (BERT with MNLI's label order, DistilBERT with
entailment first): same label order and scores within 1e-4 over 240 varied rows (emoji/CJK,
a 5,000-word text whose premise must be truncated, duplicates), single- and multi-label; plus
mode resolution, refusals and row errors."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from transformers import pipeline

from corpusmill.errors import JobError
from corpusmill.jobs.preflight import preflight
from corpusmill.spec import parse_spec
from tests import tiny_nli
from tests.conftest import write_parquet
from tests.corpora import run_task, varied_texts
from tests.tiny_models import build_bert_encoder

TEXTS = varied_texts(240, seed=5)
LABELS = ["sports", "money and business", "food and cooking", "space and science"]
TEMPLATE = "This text is about {}."


@pytest.fixture(scope="module")
def nli(tmp_path_factory):
    root = tmp_path_factory.mktemp("nli-models")
    return {"bert": tiny_nli.build_bert_nli(root / "bert-nli"),
            "distilbert": tiny_nli.build_distilbert_nli(root / "distilbert-nli"),
            "sentiment": tiny_nli.build_bert_sentiment(root / "bert-sentiment"),
            "encoder": build_bert_encoder(root / "bert-encoder")}


def run_ours(tmp_path, model, texts=TEXTS, batching=None, **options):
    options = {"candidate_labels": LABELS, "hypothesis_template": TEMPLATE, **options}
    # a small token budget: a row's windows land in different micro-batches
    return run_task(tmp_path, "zero-shot-classification", model, {"text": texts},
                    options=options, batching=batching)


def reference(model, texts, labels=LABELS, **kwargs):
    oracle = pipeline("zero-shot-classification", model=model)
    return oracle(texts, candidate_labels=labels, hypothesis_template=TEMPLATE, batch_size=16,
                  **kwargs)


def tie_groups(labels, scores, tol=1e-6):
    """Labels cut where the (descending) scores drop by more than `tol`: within a group the
    scores are equal up to float rounding, and their order is rounding noise."""
    groups = [[labels[0]]]
    for label, before, score in zip(labels[1:], scores, scores[1:]):
        if before - score > tol:
            groups.append([])
        groups[-1].append(label)
    return groups


def assert_same(ours, texts, expected):
    """Same scores within 1e-4 and the same label order; labels whose pipeline scores are equal
    within 1e-6 (saturated at 1.0, say) may come in either order."""
    exact = 0
    for text, row, want in zip(texts, ours, expected):
        assert row["error"] is None
        assert row["scores"] == pytest.approx(want["scores"], abs=1e-4), text[:80]
        groups = tie_groups(want["labels"], want["scores"])
        sizes = [len(g) for g in groups]
        cut = np.cumsum([0] + sizes)
        got = [sorted(row["labels"][a:b]) for a, b in zip(cut, cut[1:])]
        assert got == [sorted(g) for g in groups], text[:80]
        exact += row["labels"] == want["labels"]
    assert exact >= 0.95 * len(ours), "near-ties everywhere: the model's scores saturate"


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("which", ["bert", "distilbert"])
def test_labels_and_scores_match_pipeline(tmp_path, nli, which, multi_label):
    ours = run_ours(tmp_path, nli[which], multi_label=multi_label)
    # the pipeline refuses an empty text ("at least one sequence"); we score it (test below)
    kept = [i for i, t in enumerate(TEXTS) if t]
    texts = [TEXTS[i] for i in kept]
    assert len(texts) >= 200
    expected = reference(nli[which], texts, multi_label=multi_label)
    assert_same([ours[i] for i in kept], texts, expected)
    assert len({row["labels"][0] for row in ours}) >= 3, "one winning label proves little"
    assert len({round(row["scores"][0], 3) for row in ours}) >= 20, "scores must vary"
    sums = np.array([sum(row["scores"]) for row in ours])
    if multi_label:
        assert (sums > 1.05).any()  # independent probabilities, not one distribution
    else:
        assert np.allclose(sums, 1.0, atol=1e-5)


def test_one_candidate_label_is_scored_entailment_vs_contradiction(tmp_path, nli):
    texts = [t for t in TEXTS if t][:60]
    ours = run_ours(tmp_path, nli["bert"], texts=texts, candidate_labels=["sports"])
    expected = reference(nli["bert"], texts, labels=["sports"])
    assert_same(ours, texts, expected)
    assert len({round(row["scores"][0], 3) for row in ours}) >= 10  # not all 1.0 as a softmax


def test_empty_text_is_scored_with_an_empty_premise(tmp_path, nli):
    texts = ["", "   ", "the market fell after the bank raised rates"]
    ours = run_ours(tmp_path, nli["bert"], texts=texts)
    oracle = pipeline("zero-shot-classification", model=nli["bert"])
    # the pipeline's own preprocess/forward/postprocess on the empty premise it refuses at its
    # entry ("at least one sequence" for a string of length 0)
    pairs = [oracle._parse_and_tokenize([["", TEMPLATE.format(label)]]) for label in LABELS]
    with torch.no_grad():
        outputs = [{"candidate_label": label, "sequence": "", "is_last": False,
                    **oracle.model(**pair)} for label, pair in zip(LABELS, pairs)]
    want = oracle.postprocess(outputs)
    assert ours[0]["error"] is None
    assert ours[0]["labels"] == want["labels"]
    assert ours[0]["scores"] == pytest.approx(want["scores"], abs=1e-4)
    assert_same(ours[1:], texts[1:], reference(nli["bert"], texts[1:]))


def test_mode_auto_picks_nli_for_an_nli_head_and_embedding_similarity_otherwise(tmp_path, nli):
    texts = [t for t in TEXTS if t][:30]
    nli_rows = run_ours(tmp_path / "nli", nli["bert"], texts=texts)
    explicit = run_ours(tmp_path / "explicit", nli["bert"], texts=texts, mode="nli")
    assert nli_rows == explicit
    encoder_rows = run_ours(tmp_path / "enc", nli["encoder"], texts=texts)
    assert encoder_rows == run_ours(tmp_path / "enc2", nli["encoder"], texts=texts,
                                    mode="embedding-similarity")
    # cosine similarities do not form a distribution
    assert not np.allclose([sum(r["scores"]) for r in encoder_rows], 1.0, atol=1e-3)
    # a classifier without an entailment label: auto means embedding-similarity on its encoder
    sentiment_rows = run_ours(tmp_path / "sent", nli["sentiment"], texts=texts)
    assert all(r["error"] is None and -1.0001 <= min(r["scores"]) for r in sentiment_rows)


def test_embedding_similarity_on_an_nli_checkpoint_uses_its_encoder(tmp_path, nli):
    from transformers import AutoModel, AutoTokenizer

    texts = [t for t in TEXTS if t and len(t.split()) < 30][:20]
    ours = run_ours(tmp_path, nli["bert"], texts=texts, mode="embedding-similarity",
                    pooling="mean")
    encoder = AutoModel.from_pretrained(nli["bert"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(nli["bert"])

    def embed(strings):
        enc = tokenizer(strings, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    sims = embed(texts) @ embed([TEMPLATE.format(label) for label in LABELS]).T
    for row, want in zip(ours, sims):
        got = dict(zip(row["labels"], row["scores"]))
        assert [got[label] for label in LABELS] == pytest.approx(want.tolist(), abs=1e-4)


def test_hypothesis_that_fills_max_length_is_a_row_error(tmp_path, nli):
    texts = ["short text", "the quick brown fox " * 30]
    # 20 tokens of hypothesis + 3 special tokens leave no room for any text in 16 tokens
    ours = run_ours(tmp_path, nli["bert"], texts=texts, hypothesis_template="{} " + "dog " * 20,
                    batching={"max_length": 16})
    for row in ours:
        assert row["labels"] is None and row["scores"] is None
        assert "max_length=16" in row["error"] and "hypothesis" in row["error"]


def spec_for(tmp_path, model, **options):
    path = write_parquet(tmp_path / "in" / "corpus.parquet", {"text": ["a text"]})
    return parse_spec({"task": "zero-shot-classification", "model": model, "input": str(path),
                       "output": str(tmp_path / "out"),
                       "options": {"candidate_labels": LABELS, **options}})


def test_nli_mode_refuses_a_model_without_an_entailment_label(tmp_path, nli):
    with pytest.raises(JobError) as e:
        preflight(spec_for(tmp_path, nli["sentiment"], mode="nli"))
    assert "entail" in str(e.value) and "NEGATIVE" in str(e.value)
    assert "embedding-similarity" in str(e.value)


def test_nli_mode_refuses_a_bare_encoder(tmp_path, nli):
    with pytest.raises(JobError) as e:
        preflight(spec_for(tmp_path, nli["encoder"], mode="nli"))
    assert "ForSequenceClassification" in str(e.value) and "BertModel" in str(e.value)


def test_multi_label_is_refused_without_nli(tmp_path, nli):
    with pytest.raises(JobError) as e:  # the option itself
        spec_for(tmp_path, nli["bert"], mode="embedding-similarity", multi_label=True)
    assert "multi_label" in str(e.value) and "nli" in str(e.value)
    with pytest.raises(JobError) as e:  # auto that resolves to embedding-similarity
        preflight(spec_for(tmp_path, nli["encoder"], multi_label=True))
    assert "multi_label" in str(e.value) and "no NLI head" in str(e.value)
