"""Rebuild ../prompts.parquet from prompts.jsonl (a handful of short questions and requests for
the text-generation example): python jobs/examples/data/source/build_prompts.py"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

here = Path(__file__).parent
rows = [json.loads(line) for line in (here / "prompts.jsonl").read_text().splitlines() if line]
pq.write_table(pa.Table.from_pylist(rows), here.parent / "prompts.parquet")
print(f"{len(rows)} rows -> {here.parent / 'prompts.parquet'}")
