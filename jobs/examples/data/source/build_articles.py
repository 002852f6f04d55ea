"""Rebuild ../articles.parquet from articles.jsonl (hand-written sample articles, reviews and
forum posts) and topics.tsv: python jobs/examples/data/source/build_articles.py

topics.tsv gives every article exactly one topic out of TOPICS. The topics were hand-assigned,
by reading each article (no model, classifier or keyword rule chose them), and are the gold
labels for evaluating topic classification. The topic is joined in here and written as the last
column; articles.jsonl itself carries no topic."""
import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TOPICS = ("sports", "technology", "politics", "business", "health", "food", "travel", "science")

here = Path(__file__).parent
rows = [json.loads(line) for line in (here / "articles.jsonl").read_text().splitlines() if line]

with (here / "topics.tsv").open(newline="") as f:
    reader = csv.reader(f, delimiter="\t")
    header = next(reader)
    if header != ["article_id", "topic"]:
        raise SystemExit(f"topics.tsv: header must be article_id<TAB>topic, got {header}")
    topics = {}
    for lineno, fields in enumerate(reader, start=2):
        if len(fields) != 2:
            raise SystemExit(f"topics.tsv line {lineno}: expected 2 tab-separated fields, got {fields}")
        article_id, topic = fields
        if topic not in TOPICS:
            raise SystemExit(f"topics.tsv line {lineno}: {topic!r} is not one of {', '.join(TOPICS)}")
        if article_id in topics:
            raise SystemExit(f"topics.tsv line {lineno}: {article_id} appears twice")
        topics[article_id] = topic

ids = [row["article_id"] for row in rows]
missing = [i for i in ids if i not in topics]
unknown = sorted(set(topics) - set(ids))
if missing or unknown:
    raise SystemExit(f"topics.tsv: no topic for {missing}; ids not in articles.jsonl: {unknown}")

for row in rows:
    row["topic"] = topics[row["article_id"]]
pq.write_table(pa.Table.from_pylist(rows), here.parent / "articles.parquet", row_group_size=100)
print(f"{len(rows)} rows -> {here.parent / 'articles.parquet'}")
