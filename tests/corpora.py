"""Varied test texts, and the operator chain run in this process (no Ray) over a one-file
corpus, as the parity tests compare it with transformers."""
from __future__ import annotations

import random

import pyarrow as pa

WORDS = ("the quick brown fox jumps over lazy dog movie great terrible market bank rates team "
         "match minute butter sugar bake phone chip screen galaxy telescope senate budget flu "
         "water island hotel beach loved service").split()


def varied_texts(n: int = 300, seed: int = 0) -> list[str]:
    """n texts: empty, whitespace, emoji, CJK, accents, a 5,000-word text (truncated by the
    model), duplicates, and random sentences of 1-120 words."""
    rng = random.Random(seed)
    special = [
        "", "   ", "\n\t", "😀🎉 great party 🎉", "東京は晴れです。とても良い天気。", "我爱自然语言处理",
        "Café déjà vu — naïve façade", "!!!???...", "a", "UPPER CASE SHOUTING TEXT",
        " ".join(rng.choice(WORDS) for _ in range(5000)),
        " ".join(rng.choice(WORDS) for _ in range(300)),
    ]
    texts = list(special)
    while len(texts) < n - 20:
        texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 120))))
    texts += [rng.choice(texts) for _ in range(n - len(texts))]  # duplicates
    rng.shuffle(texts)
    return texts


SMALL_BATCHES = {"max_tokens": 512, "window_rows": 64}  # many micro-batches of mixed lengths


def job_plan(tmp_path, task: str, model: str, data: dict[str, list], *, options=None,
             batching=None, columns=None, torch_threads: int = 1):
    """(plan, corpus) of a job over one Parquet file `<tmp_path>/in/corpus.parquet` holding
    `data` (column -> values), preflighted as `corpusmill run` does; ids are generated
    (`corpus.parquet:<row>`); `torch_threads` for the in-process inference."""
    import dataclasses

    from corpusmill.jobs.preflight import preflight
    from corpusmill.spec import parse_spec
    from tests.conftest import write_parquet

    path = write_parquet(tmp_path / "in" / "corpus.parquet", data)
    spec = {"task": task, "model": model, "input": str(path), "output": str(tmp_path / "out"),
            "options": options or {}, "batching": batching or SMALL_BATCHES}
    if columns:
        spec["columns"] = columns
    plan, corpus = preflight(parse_spec(spec))
    return dataclasses.replace(plan, torch_threads=torch_threads), corpus


def run_task(tmp_path, task: str, model: str, data: dict[str, list], **settings) -> list[dict]:
    """The output rows, in input order, of a job over `data` (see job_plan for `settings`)."""
    plan, corpus = job_plan(tmp_path, task, model, data, **settings)
    return rows_in_input_order(run_operators(plan, corpus), len(next(iter(data.values()))))


def run_operators(plan, corpus) -> pa.Table:
    """read -> tokenize -> infer -> postprocess in this process, as Ray would run them."""
    from corpusmill.jobs.sample import run_in_process

    return run_in_process(plan, corpus)


def damage_pages(path, column: str, row_group: int) -> None:
    """Overwrite the first page header of one column chunk: the file's footer still reads, but
    that row group's data of `column` cannot be decoded ("Couldn't deserialize thrift")."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata.row_group(row_group)
    chunk = next(meta.column(i) for i in range(meta.num_columns)
                 if meta.column(i).path_in_schema == column)
    with open(path, "r+b") as f:
        f.seek(chunk.dictionary_page_offset or chunk.data_page_offset)
        f.write(b"\xff" * 12)


def run_on_both_engines(spec_data: dict) -> tuple[list[dict], list[dict]]:
    """A job spec's output rows (in input order, as dicts) through the operator chain twice:
    on the torch engine, then on onnxruntime with the task's graph exported in this process
    (into `$CORPUSMILL_CACHE`), one thread each."""
    import dataclasses

    from corpusmill.jobs.preflight import preflight
    from corpusmill.operators.engines import prepare_backend
    from corpusmill.spec import parse_spec

    spec = parse_spec({**spec_data, "resources": {**spec_data.get("resources", {}),
                                                  "backend": "onnxruntime"}})
    plan, corpus = preflight(spec)
    plan = dataclasses.replace(plan, torch_threads=1)
    onnx_plan = prepare_backend(plan, corpus, isolated=False)
    assert onnx_plan.backend == "onnxruntime"
    return (rows_in_input_order(run_operators(plan, corpus)),
            rows_in_input_order(run_operators(onnx_plan, corpus)))


def rows_in_input_order(table: pa.Table, num_rows: int | None = None) -> list[dict]:
    """Rows of a one-file corpus with generated ids, sorted by their row number; with
    `num_rows`, every row of the input is checked to be there exactly once."""
    rows = sorted(table.to_pylist(), key=lambda r: int(r["row_id"].rsplit(":", 1)[1]))
    if num_rows is not None:
        numbers = [int(r["row_id"].rsplit(":", 1)[1]) for r in rows]
        assert numbers == list(range(num_rows)), "every input row exactly once"
    return rows


def assert_same_rows(ours: list[dict], expected: list[dict], atol: float = 1e-4) -> None:
    """Equal rows: strings, ints and structure identical, floats within `atol`."""
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected):
        _assert_close(got, want, atol, where=str(want.get("row_id")))


def _assert_close(got, want, atol: float, where: str) -> None:
    if isinstance(want, float) and isinstance(got, float):
        assert abs(got - want) <= atol or (got != got and want != want), (where, got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (where, got, want)
        for key in want:
            _assert_close(got[key], want[key], atol, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, atol, f"{where}[{i}]")
    else:
        assert got == want, (where, got, want)
