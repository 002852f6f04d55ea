"""Varied test texts and an in-process runner of the operator chain (no Ray)."""
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


def rows_in_input_order(table: pa.Table) -> list[dict]:
    """Rows of a one-file corpus with generated ids, sorted by their row number."""
    rows = table.to_pylist()
    return sorted(rows, key=lambda r: int(r["row_id"].rsplit(":", 1)[1]))


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
