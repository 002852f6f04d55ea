"""The Python API on a local Ray: `corpusmill.annotate` on each kind of in-memory input gives
the CLI's outputs for the same rows, in the input's order, with the task's columns and `error`
added; `corpusmill.run` runs a job (here on a `save_to_disk` folder) as the CLI does, and its
output folder opens with pandas, polars, duckdb and `datasets`, with a dataset card."""
from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import corpusmill
from corpusmill.jobs.cli import EXIT_PARTIAL, main
from tests.conftest import write_job, write_parquet

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow

OUTPUTS = ["label", "score", "labels", "error"]
TEXTS = ["a fine day at the beach", None, "", "the senate passed the budget",
         "great match, terrible referee", "butter sugar bake", "東京は晴れです",
         "phone screen cracked", "loved the hotel service", "telescope galaxy"]


@pytest.fixture(scope="module")
def cli_rows(tmp_path_factory, tiny, ray_session) -> list[dict]:
    """The CLI's outputs for TEXTS, in input order (row_id 'rows.parquet:<row>')."""
    root = tmp_path_factory.mktemp("cli")
    write_parquet(root / "in" / "rows.parquet", {"text": TEXTS, "n": list(range(len(TEXTS)))})
    job = write_job(root / "job.yaml", task="text-classification", model=tiny.classifier,
                    input=str(root / "in"), output=str(root / "out"))
    assert main(["run", str(job)]) == EXIT_PARTIAL  # the null text is an error row
    table = pq.read_table(root / "out", columns=["n", *OUTPUTS]).sort_by("n")
    return table.select(OUTPUTS).to_pylist()


def same_rows(got: list[dict], expected: list[dict], text_column: str = "text") -> None:
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        error = want["error"] and want["error"].replace("'text'", repr(text_column))
        assert (row["label"], row["error"]) == (want["label"], error)
        if want["score"] is None:
            assert row["score"] is None or math.isnan(row["score"])
        else:
            assert row["score"] == pytest.approx(want["score"], abs=1e-4)
            assert [x["label"] for x in row["labels"]] == [x["label"] for x in want["labels"]]


def test_annotate_dataframe_keeps_index_order_and_columns(tiny, cli_rows):
    order = [3, 0, 9, 1, 5, 2, 8, 4, 7, 6]  # not the CLI's order: rows come back as given
    df = pd.DataFrame({"body": [TEXTS[i] for i in order], "n": order},
                      index=[f"doc{i}" for i in order])
    out = corpusmill.annotate(df, task="text-classification", model=tiny.classifier,
                              columns={"text": "body"})
    assert list(out.columns) == ["body", "n", *OUTPUTS]
    assert list(out.index) == list(df.index)
    pd.testing.assert_frame_equal(out[["body", "n"]], df)
    records = out.astype(object).where(out.notna(), None).to_dict("records")
    same_rows(records, [cli_rows[i] for i in order], text_column="body")
    assert out.loc["doc1", "error"] == "column 'body' is null"


def test_annotate_arrow_table_and_skip(tiny, cli_rows):
    table = pa.table({"text": TEXTS, "n": list(range(len(TEXTS)))})
    out = corpusmill.annotate(table, task="text-classification", model=tiny.classifier)
    assert out.column_names == ["text", "n", *OUTPUTS]
    same_rows(out.select(OUTPUTS).to_pylist(), cli_rows)
    skipped = corpusmill.annotate(table, task="text-classification", model=tiny.classifier,
                                  on_error="skip")
    assert skipped.column("n").to_pylist() == [i for i in range(len(TEXTS)) if i != 1]


def test_annotate_datasets_streamed_and_linked(tiny, cli_rows, tmp_path):
    datasets = pytest.importorskip("datasets")
    base = datasets.Dataset.from_dict({"text": TEXTS, "n": list(range(len(TEXTS)))})
    shuffled = base.shuffle(seed=1)  # an indices mapping: its rows are not its files' order
    out = corpusmill.annotate(shuffled, task="text-classification", model=tiny.classifier)
    assert isinstance(out, datasets.Dataset)
    assert out.column_names == ["text", "n", *OUTPUTS]
    assert out["n"] == shuffled["n"]
    same_rows(out.select_columns(OUTPUTS).to_list(), [cli_rows[i] for i in shuffled["n"]])
    # a DatasetDict read back from disk: its Arrow files are read in place, every split
    # in one run
    datasets.DatasetDict({"train": base, "test": base.select(range(4))}).save_to_disk(
        str(tmp_path / "saved"), num_shards={"train": 3, "test": 1})
    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    both = corpusmill.annotate(loaded, task="text-classification", model=tiny.classifier)
    assert list(both) == ["train", "test"]
    same_rows(both["train"].select_columns(OUTPUTS).to_list(), cli_rows)
    same_rows(both["test"].select_columns(OUTPUTS).to_list(), cli_rows[:4])


def test_annotate_ray_dataset_stays_lazy_and_ordered(tiny, cli_rows, ray_session):
    import ray.data

    rows = ray.data.from_items([{"text": t, "n": i} for i, t in enumerate(TEXTS)],
                               override_num_blocks=3)
    out = corpusmill.annotate(rows, task="text-classification", model=tiny.classifier,
                              batching={"window_rows": 4})
    assert isinstance(out, ray.data.Dataset)
    assert "Infer" in str(out)  # a plan, not executed: nothing has run yet
    result = out.take_all()
    assert [r["n"] for r in result] == list(range(len(TEXTS)))
    assert list(result[0]) == ["text", "n", *OUTPUTS]
    same_rows(result, cli_rows)


def test_annotate_refuses_with_the_fix(tiny):
    df = pd.DataFrame({"body": ["x"]})
    with pytest.raises(corpusmill.JobError, match=r"'text' .* columns present: body; map"):
        corpusmill.annotate(df, task="text-classification", model=tiny.classifier)
    with pytest.raises(corpusmill.JobError, match="annotate sets output itself"):
        corpusmill.annotate(df, task="text-classification", model=tiny.classifier,
                            output="elsewhere")
    with pytest.raises(TypeError, match="pandas DataFrame, a pyarrow Table"):
        corpusmill.annotate(["x"], task="text-classification", model=tiny.classifier)


def test_run_a_saved_dataset_and_read_the_output_every_way(tiny, cli_rows, tmp_path):
    datasets = pytest.importorskip("datasets")
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    from huggingface_hub import DatasetCard

    ds = datasets.Dataset.from_dict({"text": TEXTS, "n": list(range(len(TEXTS)))})
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=2)
    out = tmp_path / "out"
    spec = {"task": "text-classification", "model": tiny.classifier,
            "input": str(tmp_path / "saved"), "output": str(out)}
    result = corpusmill.run(spec)
    assert (result.exit_code, result.partial) == (EXIT_PARTIAL, True)
    with pytest.raises(corpusmill.PartialRun, match="1 with errors"):
        result.check()
    table = result.to_arrow().sort_by("n")
    assert table.column("row_id").to_pylist()[:6] == [
        f"data-00000-of-00002.arrow:{i}" for i in range(5)] + ["data-00001-of-00002.arrow:0"]
    same_rows(table.select(OUTPUTS).to_pylist(), cli_rows)

    n = len(TEXTS)
    assert len(result.to_pandas()) == len(result.to_dataset()) == n
    assert len(pd.read_parquet(out)) == n
    assert polars.scan_parquet(f"{out}/*.parquet").collect().height == n
    assert duckdb.sql(f"select count(*) from '{out}/*.parquet'").fetchall() == [(n,)]
    # the state folder is hidden: every reader of a Parquet folder sees the data alone
    assert len(datasets.load_dataset("parquet", data_dir=str(out), split="train")) == n

    card = DatasetCard.load(result.card)
    meta = card.data.to_dict()
    assert meta["corpusmill"]["task"] == "text-classification"
    assert meta["corpusmill"]["model"] == tiny.classifier
    assert meta["corpusmill"]["rows"]["out"] == n and meta["corpusmill"]["rows"]["errored"] == 1
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "*.parquet"}]
    features = {f["name"]: f for f in meta["dataset_info"]["features"]}
    assert features["label"]["dtype"] == "string" and features["score"]["dtype"] == "float32"
    assert meta["dataset_info"]["splits"] == [{"name": "train", "num_examples": n}]

    again = corpusmill.run(spec)  # the same job resumes: nothing left to compute
    assert again.summary.rows_before == n and len(again.to_arrow()) == n
