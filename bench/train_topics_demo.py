"""The "fine-tune, then annotate" demo, measured: fine-tune the packaged all-MiniLM-L6-v2 on
~250 of the 320 demo articles' hand-assigned topics, annotate every article with it, and
compare it with the zero-shot demo (embedding similarity, same base model) on the SAME held-out
rows: the ones the train spec's validation split holds out.

    python bench/train_topics_demo.py --json bench/results-train-topics.json

Three CLI processes, each timed start to exit (Python start-up, model load, Ray included):
  1. corpusmill train jobs/examples/train_topics_minilm.yaml   (output_mode: overwrite)
  2. corpusmill run jobs/examples/topics_minilm.yaml           (zero-shot demo)
  3. corpusmill run jobs/examples/topics_finetuned.yaml        (the trained model)
then accuracy and macro-F1 (scikit-learn) of both on the held-out rows.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).parents[1]
EXAMPLES = REPO / "jobs" / "examples"


def cli(*args: str) -> dict:
    """Wall seconds, and CPU seconds of the process (and the children it waited for: not
    Ray's workers, which a `run` starts through Ray)."""
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "corpusmill.jobs.cli", *args], cwd=REPO, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(time.monotonic() - started, 1), "cpu_s": round(cpu, 1)}


def scores(gold: list[str], predicted: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(gold, predicted)), 4),
            "macro_f1": round(float(f1_score(gold, predicted, average="macro")), 4),
            "rows": len(gold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "out" / "bench-train-topics"))
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    from corpusmill.jobs.training.train_spec import load_train_spec
    from corpusmill.operators.training.train_data import held_out

    out = Path(args.out)
    model, zero_shot, finetuned = out / "model", out / "zero-shot", out / "finetuned"
    spec_path = EXAMPLES / "train_topics_minilm.yaml"
    seconds = {
        "train": cli("train", str(spec_path), "--set", f"output={model}",
                     "--set", "output_mode=overwrite"),
        "zero_shot_run": cli("run", str(EXAMPLES / "topics_minilm.yaml"),
                             "--set", f"output={zero_shot}"),
        "finetuned_run": cli("run", str(EXAMPLES / "topics_finetuned.yaml"),
                             "--set", f"model={model}", "--set", f"output={finetuned}"),
    }
    spec = load_train_spec(spec_path)
    articles = pq.read_table(EXAMPLES / "data" / "articles.parquet").to_pylist()
    gold = {a["article_id"]: a["topic"] for a in articles}
    ids = list(gold)
    held = {i for i, out_ in zip(ids, held_out(ids, spec.validation.split,
                                                spec.validation.seed)) if out_}
    zero = {r["article_id"]: r["labels"][0] for r in pq.read_table(zero_shot).to_pylist()}
    tuned = {r["article_id"]: r["label"] for r in pq.read_table(finetuned).to_pylist()}
    order = sorted(held)
    report = json.loads((model / "training_report.json").read_text())
    result = {
        "held_out_rows": len(order), "train_rows": report["data"]["train"]["rows"],
        "zero_shot": scores([gold[i] for i in order], [zero[i] for i in order]),
        "fine_tuned": scores([gold[i] for i in order], [tuned[i] for i in order]),
        "fine_tuned_validation_report": report["final_metrics"],
        "epochs": report["epochs"], "seconds": seconds,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
