"""Several tasks in one pass (`tasks:` in the job spec): each task's columns equal what its own
single-task job writes, row for row; tokenization is shared by tasks that tokenize alike and
only by them (counted in the run's stats); a driver killed mid-run and rerun writes every id
exactly once; per-row errors land in the failing task's error and the joined `error`."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import corpusmill
from tests import tiny_models
from tests.conftest import write_job, write_parquet
from tests.corpora import assert_same_rows, varied_texts
from tests.integration.faults import CliRun, committed_rows

ROWS = 240


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny):
    """Two classifiers and an encoder over one fixed tokenizer (they tokenize alike), and
    the session's encoder, whose trained vocabulary differs."""
    root = tmp_path_factory.mktemp("several-models")
    return {
        "sentiment": {"task": "text-classification",
                      "model": tiny_models.build_bert_classifier(root / "clf", num_labels=3,
                                                                 fixed_vocab=True)},
        "topics": {"task": "text-classification", "options": {"top_k": 2},
                   "model": tiny_models.build_bert_classifier(root / "multi", num_labels=4,
                                                              multi_label=True, seed=3,
                                                              fixed_vocab=True)},
        "vec": {"task": "feature-extraction",
                "model": tiny_models.build_bert_encoder(root / "enc", fixed_vocab=True)},
        "other_vec": {"task": "feature-extraction", "model": tiny.encoder},
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("several-corpus")
    texts = varied_texts(ROWS, seed=5)
    texts[7] = None  # a row every task refuses
    half = ROWS // 2
    for part, chunk in enumerate((texts[:half], texts[half:])):
        write_parquet(folder / f"part-{part}.parquet",
                      {"doc": [f"d{part * half + i}" for i in range(len(chunk))],
                       "text": chunk})
    return folder


def job(corpus, out, **extra) -> dict:
    return {"input": str(corpus), "output": str(out), "id_column": "doc",
            "batching": {"window_rows": 64, "max_tokens": 1024}, **extra}


def by_id(result) -> list[dict]:
    return result.to_arrow().sort_by("doc").to_pylist()


@pytest.fixture(scope="module")
def singles(tmp_path_factory, models, corpus, ray_session):
    """Each task's own single-task job's rows, by task name."""
    root = tmp_path_factory.mktemp("several-singles")
    return {name: by_id(corpusmill.run(job(corpus, root / name, **block)))
            for name, block in models.items()}


def task_columns(rows: list[dict], name: str) -> list[dict]:
    """One task's columns of a joined output, without its prefix."""
    prefix = f"{name}_"
    return [{"doc": r["doc"], **{k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix)}}
            for r in rows]


def single_columns(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "text"} for r in rows]


def test_three_tasks_in_one_pass_equal_their_single_task_jobs_and_share_one_tokenization(
        tmp_path, models, corpus, singles):
    names = ("sentiment", "topics", "vec")
    result = corpusmill.run(job(corpus, tmp_path / "out",
                                tasks={name: models[name] for name in names}))
    assert result.exit_code == 3  # the null row is recorded as an error in every task
    rows = by_id(result)
    assert len(rows) == ROWS and len({r["doc"] for r in rows}) == ROWS
    schema = pq.read_schema(result.data_files()[0])
    assert schema.names == ["doc", "text",
                            "sentiment_label", "sentiment_score", "sentiment_labels",
                            "sentiment_error",
                            "topics_label", "topics_score", "topics_labels", "topics_error",
                            "vec_embedding", "vec_error", "error"]
    for name in names:
        assert_same_rows(task_columns(rows, name), single_columns(singles[name]))
    failed = [r for r in rows if r["error"] is not None]
    assert [r["doc"] for r in failed] == ["d7"]
    assert failed[0]["error"] == "; ".join(f"{name}: {failed[0][f'{name}_error']}"
                                           for name in names)
    stages = result.manifest()["stats"]["stages"]
    assert stages["tokenize"]["rows"] == ROWS  # one tokenization for all three
    assert all(stages[f"inference:{name}"]["rows"] == ROWS for name in names)
    pools = result.manifest()["placement"]["tasks"]
    assert set(pools) == set(names)  # one pool each, its own actors counted (2 cores: 1 each)
    assert [pools[name]["actors"]["peak"] for name in names] == [1, 1, 1]
    actors = result.manifest()["stats"]["actors"]  # every pool's, each with its task
    assert sorted(a["task"] for a in actors) == sorted(names)


def test_tasks_whose_tokenizers_differ_tokenize_apart(tmp_path, models, corpus, singles):
    result = corpusmill.run(job(corpus, tmp_path / "out", on_error="skip",
                                tasks={"sentiment": models["sentiment"],
                                       "other_vec": models["other_vec"]}))
    rows = by_id(result)
    assert result.manifest()["stats"]["stages"]["tokenize"]["rows"] == 2 * ROWS
    # under on_error: skip the row that failed is left out, the others are as alone
    assert [r["doc"] for r in rows] == [r["doc"] for r in singles["sentiment"]
                                        if r["doc"] != "d7"]
    for name in ("sentiment", "other_vec"):
        expected = [r for r in single_columns(singles[name]) if r["doc"] != "d7"]
        assert_same_rows(task_columns(rows, name), expected)


def test_a_tokenization_shared_from_tokenize_tasks_gives_the_same_rows(tmp_path, models, corpus,
                                                                       singles):
    """Tokenizing in tasks ahead of the pools (what GPU actors get): one tokenization serves
    both tasks there too."""
    result = corpusmill.run(job(corpus, tmp_path / "out", resources={"tokenize": "tasks"},
                                tasks={"sentiment": models["sentiment"],
                                       "vec": models["vec"]}))
    rows = by_id(result)
    assert result.manifest()["stats"]["stages"]["tokenize"]["rows"] == ROWS
    for name in ("sentiment", "vec"):
        assert_same_rows(task_columns(rows, name), single_columns(singles[name]))


def test_annotate_takes_several_tasks(models):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"text": ["a fine movie", "terrible service", "the market"]},
                             index=[10, 20, 30])
    both = corpusmill.annotate(frame, tasks={"sentiment": models["sentiment"],
                                             "vec": models["vec"]})
    alone = corpusmill.annotate(frame, models["sentiment"]["task"],
                                models["sentiment"]["model"])
    assert list(both.index) == [10, 20, 30]
    assert list(both["sentiment_label"]) == list(alone["label"])
    assert list(both["sentiment_score"]) == pytest.approx(list(alone["score"]), abs=1e-4)
    assert len(both["vec_embedding"][10]) == 32 and both["error"].isna().all()


@pytest.mark.slow
def test_a_driver_killed_mid_run_then_rerun_writes_every_id_once(tmp_path, models, corpus,
                                                                 singles):
    out = tmp_path / "out"
    spec = job(corpus, out, tasks={name: models[name] for name in ("sentiment", "vec")})
    spec["batching"] = {"window_rows": 16, "max_tokens": 1024}  # many blocks
    path = write_job(tmp_path / "job.yaml", **spec)
    run = CliRun(path)
    assert run.kill_when(lambda: committed_rows(out) >= ROWS // 4), run.output()
    rerun = CliRun(path)
    assert rerun.wait() == 3, rerun.output()  # partial: the null row's errors
    assert "rows were already done by an earlier run" in rerun.output()
    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: r["doc"])
    assert [r["doc"] for r in rows] == sorted(f"d{i}" for i in range(ROWS))  # each once
    for name in ("sentiment", "vec"):
        assert_same_rows(task_columns(rows, name), single_columns(singles[name]))


def test_an_incremental_job_with_several_tasks_processes_only_new_files(tmp_path, models,
                                                                        singles):
    folder = tmp_path / "corpus"
    first = singles["sentiment"][:50]
    write_parquet(folder / "a.parquet", {"doc": [r["doc"] for r in first],
                                         "text": [r["text"] for r in first]})
    spec = job(folder, tmp_path / "out", incremental=True,
               tasks={name: models[name] for name in ("sentiment", "vec")})
    assert corpusmill.run(spec).exit_code == 0
    more = singles["sentiment"][50:80]
    write_parquet(folder / "b.parquet", {"doc": [r["doc"] for r in more],
                                         "text": [r["text"] for r in more]})
    again = corpusmill.run(spec)
    assert again.exit_code == 0 and again.summary.files_in == 1
    rows = by_id(again)
    assert [r["doc"] for r in rows] == sorted(r["doc"] for r in first + more)
    for name in ("sentiment", "vec"):
        expected = sorted(single_columns(singles[name][:80]), key=lambda r: r["doc"])
        assert_same_rows(task_columns(rows, name), expected)
