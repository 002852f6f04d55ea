"""Rebuild ../articles.parquet from articles.jsonl (hand-written sample articles, reviews and
forum posts): python jobs/examples/data/source/build_articles.py"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

here = Path(__file__).parent
rows = [json.loads(line) for line in (here / "articles.jsonl").read_text().splitlines() if line]
pq.write_table(pa.Table.from_pylist(rows), here.parent / "articles.parquet", row_group_size=100)
print(f"{len(rows)} rows -> {here.parent / 'articles.parquet'}")
