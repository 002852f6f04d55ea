"""The NER example job (jobs/examples/ner_local.yaml) runs through the CLI on the sample corpus
with a locally built MiniLM token classifier: every row once, the fixed schema, and entity
offsets that point at the text their `word` was made from. Windows of 64 tokens (instead of
the model's 512) make most articles span several windows, so the merge runs under Ray too."""
from __future__ import annotations

import runpy
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from corpusmill.jobs.cli import EXIT_OK, main
from corpusmill.pipelines.token_classification import ENTITY

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"
CORPUS = EXAMPLES / "data" / "articles.parquet"
WINDOW = 64


def comparable(text: str) -> str:
    """What an uncased WordPiece model keeps of a text: lower case, no accents, no spaces."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c) and not c.isspace())


def test_ner_example_with_a_locally_built_model(tmp_path, ray_session):
    model = tmp_path / "minilm-ner"
    runpy.run_path(str(EXAMPLES / "make_minilm_ner.py"), run_name="not_main")["main"](str(model))
    out = tmp_path / "ner"
    assert main(["run", str(EXAMPLES / "ner_local.yaml"), "--set", f"model={model}",
                 "--set", f"output={out}", "--set", f"batching.max_length={WINDOW}",
                 "--set", "options.stride=16"]) == EXIT_OK

    corpus = pq.read_table(CORPUS, columns=["article_id", "body"]).to_pylist()
    table = pq.read_table(out)
    assert table.column_names == ["article_id", "title", "entities", "error"]
    assert table.schema.field("entities").type == pa.list_(ENTITY)
    ids = table.column("article_id").to_pylist()
    assert sorted(ids) == sorted(r["article_id"] for r in corpus), "every row exactly once"

    bodies = {r["article_id"]: r["body"] for r in corpus}
    tokenizer = AutoTokenizer.from_pretrained(model)
    several = sum(len(tokenizer(b)["input_ids"]) > WINDOW for b in bodies.values())
    assert several > len(bodies) // 4, "most articles should need several windows"
    found = 0
    for row in table.to_pylist():
        assert row["error"] is None
        text = bodies[row["article_id"]]
        previous_end = 0
        for e in row["entities"]:
            assert e["entity"] in {"PER", "LOC", "ORG"}  # grouped; O left out
            assert 0 < e["score"] <= 1
            assert previous_end <= e["start"] < e["end"] <= len(text)  # in order, no overlap
            # `word` is the tokens joined back; a group that starts inside a word keeps the
            # continuation mark of its first token, as in transformers ("##s a")
            word = e["word"].removeprefix("##")
            assert comparable(text[e["start"]:e["end"]]) == comparable(word), e
            previous_end = e["end"]
            found += 1
    assert found > table.num_rows, "a random head tags many tokens; none found means no output"
