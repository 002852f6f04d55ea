"""The path around the model, side by side: a near-zero-cost model (bench/make_tiny_classifier.py,
2 layers, width 32) over a corpus of many rows, so what is timed is reading, tokenizing,
batching, handing over, postprocessing and writing. Each mode is a separate process, timed
whole (imports, model load, read, write):

  bare-loop       one process: read every file, tokenize all, sort by length, pad per 256
                  rows, forward, write Parquet. The ceiling for one process.
  ray-data        a plain Ray Data script: read_parquet -> map_batches(an actor class that
                  tokenizes and runs the model, batch_size=256, one actor of 1 CPU) ->
                  write_parquet. What a user writes by hand.
  corpusmill      `corpusmill run` with the defaults (on this machine: executor auto runs
                  the job in the command's own process, no Ray)
  corpusmill-ray  the same with resources.executor: ray (a local Ray, an actor pool)
  corpusmill-torch, corpusmill-onnx   the defaults with resources.backend set
  corpusmill-before  the defaults from the tree of git ref `--before`

Modes run interleaved `--reps` times; medians are reported with peak RSS of the process tree,
the seconds from start to the first output file, and the machine's load beside every run.

    python bench/make_tiny_classifier.py out/models/tiny-classifier
    python bench/make_corpus.py --rows 200000 --files 8 --out bench/data/plumb-200k
    python bench/bench_plumbing.py --corpus bench/data/plumb-200k \
        --model out/models/tiny-classifier --reps 3 --json bench/results-plumbing.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO))
from bench.bench_classification import (  # noqa: E402
    corpusmill_job, run_measured, tree_env,
)

MODES = ["bare-loop", "ray-data", "corpusmill", "corpusmill-ray"]
RESOURCES = {"corpusmill": {}, "corpusmill-ray": {"executor": "ray"},
             "corpusmill-torch": {"backend": "torch"},
             "corpusmill-onnx": {"backend": "onnxruntime"}, "corpusmill-before": {}}
BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="folder of Parquet files (id, text)")
    parser.add_argument("--model", required=True, help="sequence-classification model folder")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--before", help="git ref for mode corpusmill-before")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="passed to `corpusmill run --set`")
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return {"bare-loop": bare_loop, "ray-data": ray_data}[args.child](args)

    import pyarrow.parquet as pq
    rows = pq.ParquetDataset(args.corpus).count_rows() if hasattr(
        pq.ParquetDataset, "count_rows") else pq.read_table(args.corpus, columns=["id"]).num_rows
    work = Path(tempfile.mkdtemp(prefix="cm-plumb-"))
    modes = args.modes.split(",")
    envs = {m: None for m in modes}
    if "corpusmill-before" in modes:
        envs["corpusmill-before"] = tree_env(args.before, work / "before")
    runs: dict[str, list] = {m: [] for m in modes}
    for rep in range(args.reps):
        for mode in modes:
            out = work / f"{mode}-{rep}"
            data = out / "out"
            if mode.startswith("corpusmill"):
                job = corpusmill_job(args, out, RESOURCES[mode])
                cmd = [sys.executable, "-m", "corpusmill.jobs.cli", "run", str(job),
                       *[f"--set={s}" for s in args.overrides]]
            else:
                out.mkdir(parents=True)
                cmd = [sys.executable, __file__, "--child", mode, "--corpus", args.corpus,
                       "--model", args.model, "--out", str(data)]
            load = os.getloadavg()[0]
            wall, first, rss, rc, text = run_and_watch(cmd, data, envs[mode])
            if rc != 0:
                print(f"{mode}: FAILED (exit {rc})\n{text[-3000:]}", flush=True)
                continue
            written = pq.read_table(str(data), columns=["id"]).num_rows
            runs[mode].append({"wall_s": wall, "first_output_s": first,
                               "peak_rss_mib": rss / 2**20, "load_1min": load,
                               "rows_written": written})
            print(f"rep {rep + 1} {mode:18s} {rows / wall:8.0f} rows/s  wall {wall:6.1f} s  "
                  f"first file {first if first is None else round(first, 1)} s  peak RSS "
                  f"{rss / 2**20:6.0f} MiB  load {load:.1f}  rows written {written}", flush=True)
    results = {}
    for mode, done in runs.items():
        if not done:
            continue
        wall = statistics.median(r["wall_s"] for r in done)
        firsts = [r["first_output_s"] for r in done if r["first_output_s"] is not None]
        results[mode] = {"rows_per_s": rows / wall, "wall_s": wall,
                         "first_output_s": statistics.median(firsts) if firsts else None,
                         "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in done),
                         "runs": done}
        print(f"median {mode:18s} {rows / wall:8.0f} rows/s  wall {wall:6.1f} s  first file "
              f"{results[mode]['first_output_s']} s  peak RSS "
              f"{results[mode]['peak_rss_mib']:6.0f} MiB")
    ratios = {}
    for mode in results:
        for base in ("bare-loop", "ray-data", "corpusmill-before"):
            if base in results and mode != base and mode.startswith("corpusmill"):
                ratios[f"{mode} / {base}"] = (results[mode]["rows_per_s"]
                                              / results[base]["rows_per_s"])
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": rows, "reps": args.reps, "cores": os.cpu_count(), "modes": results,
             "ratios": ratios}, indent=2))


def run_and_watch(cmd, data: Path, env) -> tuple[float, float | None, int, int, str]:
    """(wall s, s to the first Parquet file under `data`, peak tree RSS bytes, exit code,
    output): bench_classification's measurement, watching for the first output file."""
    first = None

    def watch(seconds: float) -> None:
        nonlocal first
        if first is None and data.is_dir() and any(data.glob("*.parquet")):
            first = seconds
    wall, peak, rc, out = run_measured(cmd, env=env, on_sample=watch, every_s=0.25,
                                       stderr=subprocess.STDOUT)
    return wall, first, peak, rc, out


# ---------------------------------------------------------------- children

def bare_loop(args) -> None:
    """Read, tokenize all, sort by length, pad per BATCH rows, forward, write."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(os.cpu_count())
    table = pq.read_table(args.corpus, columns=["id", "text"])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    ids = tokenizer(table.column("text").to_pylist(), truncation=True)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    labels = np.empty(len(ids), dtype=np.int64)
    scores = np.empty(len(ids), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            enc = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            probs = model(**enc).logits.softmax(-1)
            best = probs.max(-1)
            labels[batch] = best.indices.numpy()
            scores[batch] = best.values.numpy()
    names = np.array([model.config.id2label[i] for i in range(model.config.num_labels)])
    Path(args.out).mkdir(parents=True)
    pq.write_table(pa.table({"id": table.column("id"), "label": names[labels],
                             "score": scores}), Path(args.out) / "part-0.parquet")


class _Classify:
    """The actor of a plain Ray Data script: tokenizes a batch and runs the model on it."""

    def __init__(self, model: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(1)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSequenceClassification.from_pretrained(model).eval()

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        import torch

        enc = self.tokenizer(list(batch["text"]), truncation=True, padding=True,
                             return_tensors="pt")
        with torch.inference_mode():
            best = self.model(**enc).logits.softmax(-1).max(-1)
        names = self.model.config.id2label
        return {"id": batch["id"],
                "label": np.array([names[int(i)] for i in best.indices]),
                "score": best.values.numpy()}


def ray_data(args) -> None:
    import ray

    ray.init(include_dashboard=False, logging_level="WARNING")
    ds = ray.data.read_parquet(args.corpus, columns=["id", "text"])
    ds = ds.map_batches(_Classify, fn_constructor_kwargs={"model": args.model},
                        batch_size=BATCH, compute=ray.data.ActorPoolStrategy(size=1),
                        num_cpus=1)
    ds.write_parquet(args.out)


if __name__ == "__main__":
    main()
