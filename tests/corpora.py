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
