"""How long the run report takes on a large output: synthetic text-classification output (label,
score, labels, with gold) and token-classification output (a list of entities per row) in
several Parquet files beside a manifest, then `write_report` (read, aggregate, score, render)
timed, median of --repeats.

    python bench/bench_report.py --rows 1000000 --ner-rows 200000 --json bench/results-report.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LABELS = [f"topic_{i}" for i in range(12)]


def classification_output(folder: Path, rows: int, files: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    per = rows // files
    for f in range(files):
        label = rng.integers(0, len(LABELS), per)
        gold = np.where(rng.random(per) < 0.8, label, rng.integers(0, len(LABELS), per))
        score = rng.random(per).astype(np.float32)
        table = pa.table({
            "row_id": [f"in-{f}.parquet:{i}" for i in range(per)],
            "gold": pa.array(np.array(LABELS)[gold]),
            "label": pa.array(np.array(LABELS)[label]), "score": score,
            "labels": [[{"label": LABELS[k], "score": float(s)}] for k, s in zip(label, score)],
            "error": pa.nulls(per, pa.string())})
        pq.write_table(table, folder / f"part-{f}.parquet")
    return {"task": "text-classification", "model": "org/model", "input": "in", "output": str(folder),
            "evaluate": {"gold": "gold"}}


def ner_output(folder: Path, rows: int, files: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    per = rows // files
    text = "Ada Lovelace met Charles Babbage in London on a Tuesday ."
    for f in range(files):
        entities = [[{"entity": ["PER", "LOC", "ORG"][k % 3], "score": float(rng.random()),
                      "word": "x", "start": 0, "end": 3} for k in range(rng.integers(0, 9))]
                    for _ in range(per)]
        table = pa.table({"row_id": [f"in-{f}.parquet:{i}" for i in range(per)],
                          "text": [text] * per, "entities": entities,
                          "error": pa.nulls(per, pa.string())})
        pq.write_table(table, folder / f"part-{f}.parquet")
    return {"task": "token-classification", "model": "org/model", "input": "in",
            "output": str(folder)}


def time_report(folder: Path, spec: dict, rows: int, repeats: int) -> dict:
    from corpusmill.jobs.reporting.report import write_report
    from corpusmill.jobs.stores.output import write_manifest

    write_manifest(str(folder), {"job_id": "bench", "status": "complete", "spec": spec,
                                 "summary": {"rows_in": rows, "rows_out": rows, "seconds": 1.0}})
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        write_report(str(folder))
        seconds.append(time.perf_counter() - start)
    return {"task": spec["task"], "rows": rows, "seconds": seconds,
            "median_s": statistics.median(seconds),
            "rows_per_s": rows / statistics.median(seconds)}


def main(args) -> None:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, rows in (("clf", classification_output, args.rows),
                                  ("ner", ner_output, args.ner_rows)):
            folder = Path(tmp) / name
            folder.mkdir()
            spec = build(folder, rows, args.files)
            results.append(time_report(folder, spec, rows, args.repeats))
            print(json.dumps(results[-1]))
    results.append({"load": os.getloadavg()})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ner-rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    main(parser.parse_args())
