"""Rebuild ../squad_sample.parquet from squad_sample.json: 34 hand-written questions, in SQuAD
v1.1's JSON format, over 13 of the demo articles (each article body is a context), each with
one or more acceptable answers (spans of the context, as SQuAD's annotators gave several):
    python jobs/examples/data/source/build_squad_sample.py
One row per question: question_id, title, question, context, gold_answers (list of strings;
not `answers`, a column question-answering writes). Every answer is checked to be the
context's text at its answer_start."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

source = Path(__file__).with_name("squad_sample.json")
rows = []
for article in json.loads(source.read_text(encoding="utf-8"))["data"]:
    for paragraph in article["paragraphs"]:
        context = paragraph["context"]
        for qa in paragraph["qas"]:
            for answer in qa["answers"]:
                start = answer["answer_start"]
                if context[start:start + len(answer["text"])] != answer["text"]:
                    raise SystemExit(f"{qa['id']}: {answer['text']!r} is not at {start}")
            rows.append({"question_id": qa["id"], "title": article["title"],
                         "question": qa["question"], "context": context,
                         "gold_answers": [a["text"] for a in qa["answers"]]})
target = Path(__file__).parents[1] / "squad_sample.parquet"
pq.write_table(pa.Table.from_pylist(rows), target)
print(f"{len(rows)} questions -> {target}")
