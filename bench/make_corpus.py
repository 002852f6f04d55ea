"""A seeded benchmark corpus: texts of log-normal length in words (median ~40), made of real
sentences from the sample articles so the tokenizer sees ordinary English.

    python bench/make_corpus.py --rows 10000 --out bench/data/corpus-10k.parquet
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ARTICLES = Path(__file__).parents[1] / "jobs" / "examples" / "data" / "source" / "articles.jsonl"


def sentences() -> list[str]:
    out = []
    for line in ARTICLES.read_text(encoding="utf-8").splitlines():
        body = json.loads(line)["body"]
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", body) if len(s.split()) >= 3]
    return out


def make_texts(rows: int, seed: int = 0, median_words: float = 40.0, sigma: float = 0.8):
    rng = random.Random(seed)
    pool = sentences()
    texts = []
    for _ in range(rows):
        target = max(1, int(rng.lognormvariate(mu=_log(median_words), sigma=sigma)))
        words: list[str] = []
        while len(words) < target:
            words += rng.choice(pool).split()
        texts.append(" ".join(words[:target]))
    return texts


def _log(x: float) -> float:
    import math
    return math.log(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--out", required=True, help="folder for the Parquet files")
    args = parser.parse_args()
    texts = make_texts(args.rows, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(texts) // args.files)
    for i in range(args.files):
        chunk = texts[i * per_file:(i + 1) * per_file]
        ids = [f"r{i * per_file + k:07d}" for k in range(len(chunk))]
        pq.write_table(pa.table({"id": ids, "text": chunk}), out / f"part-{i}.parquet",
                       row_group_size=2_000)
    print(f"{len(texts)} rows in {args.files} files -> {out}")


if __name__ == "__main__":
    main()
