"""text-generation through the CLI on a local Ray: the SmolLM2 example job (real weights from the
packaged GGUF) answers its prompts sensibly, and sampled output is the same with one or two
inference actors and different batch budgets."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, main
from tests import tiny_generation
from tests.conftest import write_job, write_parquet
from tests.corpora import varied_texts

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "jobs" / "examples"


def test_smollm2_example_answers_its_prompts(tmp_path, ray_session):
    out = tmp_path / "generated"
    # the first run on a machine converts the GGUF (~30 s), later ones reuse the cached folder
    assert main(["run", str(EXAMPLES / "generate_smollm2.yaml"), "--set", f"output={out}"]) \
        == EXIT_OK
    table = pq.read_table(out)
    assert table.column_names == ["prompt_id", "prompt", "generated_text", "input_truncated", "error"]
    assert not any(table.column("input_truncated").to_pylist())
    rows = {r["prompt_id"]: r for r in table.to_pylist()}
    assert len(rows) == pq.read_metadata(EXAMPLES / "data" / "prompts.parquet").num_rows
    assert all(r["error"] is None and r["generated_text"].strip() for r in rows.values())
    assert all("\n\n" not in r["generated_text"] for r in rows.values())  # the stop string
    answers = {"p01": "Paris", "p03": "7", "p04": "blue"}  # SmolLM2-135M's greedy answers
    for prompt_id, answer in answers.items():
        assert answer.lower() in rows[prompt_id]["generated_text"].lower(), rows[prompt_id]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return tiny_generation.build_gpt2(tmp_path_factory.mktemp("gen") / "gpt2")


def test_sampling_is_the_same_with_one_or_two_actors(tmp_path, ray_session, tiny_gpt2):
    texts = [t[:200] for t in varied_texts(60, seed=3)]
    corpus = write_parquet(tmp_path / "corpus" / "prompts.parquet",
                           {"doc_id": [f"d{i}" for i in range(len(texts))], "text": texts},
                           row_group_size=15)
    outputs = []
    for run, (actors, budget) in enumerate([(1, 4096), (2, 300)]):
        job = write_job(tmp_path / f"job{run}.yaml", task="text-generation", model=tiny_gpt2,
                        input=str(corpus), output=str(tmp_path / f"out{run}"),
                        id_column="doc_id",
                        options={"do_sample": True, "temperature": 0.8, "top_p": 0.9,
                                 "max_new_tokens": 10, "seed": 11},
                        batching={"max_tokens": budget, "window_rows": 15},
                        resources={"concurrency": actors})
        assert main(["run", str(job)]) == EXIT_OK
        rows = pq.read_table(tmp_path / f"out{run}").to_pylist()
        assert len(rows) == len(texts) and all(r["error"] is None for r in rows)
        outputs.append({r["doc_id"]: r["generated_text"] for r in rows})
    assert outputs[0] == outputs[1]
    assert len(set(outputs[0].values())) >= 40  # samples, not one repeated text
