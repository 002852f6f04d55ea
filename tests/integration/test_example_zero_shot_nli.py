"""The NLI zero-shot example job (jobs/examples/zero_shot_nli_local.yaml) through the CLI: the
model its script builds validates (loads, fits nli mode), and the job writes every article
once with the fixed schema (multi-label scoring is compared with transformers in
tests/operators/test_zero_shot_nli_parity.py). The Ray run uses a tiny NLI-shaped model
(`--set model=...`), so it takes seconds on 2 cores; the packaged MiniLM the script builds is
checked with `corpusmill validate`, which loads it without Ray."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from corpusmill.jobs.cli import EXIT_INVALID, EXIT_OK, main
from tests import tiny_nli
from tests.tiny_models import build_bert_encoder

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"
JOB = EXAMPLES / "zero_shot_nli_local.yaml"
CORPUS = pq.read_table(EXAMPLES / "data" / "articles.parquet")
LABELS = yaml.safe_load(JOB.read_text())["options"]["candidate_labels"]


@pytest.fixture(scope="module")
def tiny_nli_model(tmp_path_factory):
    return tiny_nli.build_bert_nli(tmp_path_factory.mktemp("models") / "bert-nli")


def test_the_models_script_builds_a_model_the_example_validates(tmp_path, capsys):
    model = tmp_path / "minilm-nli"
    runpy.run_path(str(EXAMPLES / "make_minilm_nli.py"), run_name="not_main")["main"](str(model))
    assert main(["validate", str(JOB), "--set", f"model={model}",
                 "--set", f"output={tmp_path / 'out'}"]) == EXIT_OK
    assert "labels (list<item: string>), scores (list<item: float>)" in capsys.readouterr().out


def test_example_writes_every_article_once(tmp_path, ray_session, tiny_nli_model):
    out = tmp_path / "topics-nli"
    assert main(["run", str(JOB), "--set", f"model={tiny_nli_model}",
                 "--set", f"output={out}"]) == EXIT_OK
    table = pq.read_table(out)
    assert table.column_names == ["article_id", "title", "labels", "scores", "error"]
    assert table.schema.field("labels").type == pa.list_(pa.string())
    assert table.schema.field("scores").type == pa.list_(pa.float32())
    ids = table.column("article_id").to_pylist()
    assert sorted(ids) == sorted(CORPUS.column("article_id").to_pylist())  # each once
    titles = dict(zip(CORPUS.column("article_id").to_pylist(), CORPUS.column("title").to_pylist()))
    top = set()
    for row in table.to_pylist():
        assert row["error"] is None and row["title"] == titles[row["article_id"]]
        assert sorted(row["labels"]) == sorted(LABELS)
        assert row["scores"] == sorted(row["scores"], reverse=True)
        assert all(0.0 <= s <= 1.0 for s in row["scores"])
        assert math.isclose(sum(row["scores"]), 1.0, abs_tol=1e-5)  # softmax across labels
        top.add(row["labels"][0])
    assert len(top) >= 2


def test_example_refuses_an_encoder_without_an_nli_head(tmp_path, capsys):
    encoder = build_bert_encoder(tmp_path / "encoder")
    assert main(["run", str(JOB), "--set", f"model={encoder}",
                 "--set", f"output={tmp_path / 'out'}"]) == EXIT_INVALID
    assert "mode nli" in capsys.readouterr().err
