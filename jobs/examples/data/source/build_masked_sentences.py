"""Rebuild ../masked_sentences.parquet from masked_sentences.jsonl (short sentences with one or
two [MASK] blanks and the word a person would put in `answer`, for the fill-mask example):
python jobs/examples/data/source/build_masked_sentences.py"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

here = Path(__file__).parent
rows = [json.loads(line) for line in (here / "masked_sentences.jsonl").read_text().splitlines()
        if line]
pq.write_table(pa.Table.from_pylist(rows), here.parent / "masked_sentences.parquet")
print(f"{len(rows)} rows -> {here.parent / 'masked_sentences.parquet'}")
