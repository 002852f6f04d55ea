"""Rebuild ../questions.parquet, a question-answering sample over ../articles.parquet: two
questions on each of the first 100 articles (the article body is the context), plus one
question over a digest of every article (~20,000 words, many windows):
    python jobs/examples/data/source/build_questions.py"""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

QUESTIONS = [
    "What is this about?",
    "What went wrong?",
    "What does the author recommend?",
    "How much did it cost?",
    "Who is involved?",
    "When did it happen?",
    "Where did it take place?",
    "What is the main problem?",
]

data = Path(__file__).parents[1]
articles = pq.read_table(data / "articles.parquet").to_pylist()
rows = []
for i, article in enumerate(articles[:100]):
    for j in range(2):
        rows.append({"question_id": f"q{len(rows) + 1:04d}", "article_id": article["article_id"],
                     "question": QUESTIONS[(2 * i + j) % len(QUESTIONS)],
                     "context": article["body"]})
digest = "\n\n".join(f"{a['title']}. {a['body']}" for a in articles)
rows.append({"question_id": f"q{len(rows) + 1:04d}", "article_id": "digest",
             "question": "Which article is about the space station?", "context": digest})
pq.write_table(pa.Table.from_pylist(rows), data / "questions.parquet")
print(f"{len(rows)} rows -> {data / 'questions.parquet'} (digest: {len(digest.split())} words)")
