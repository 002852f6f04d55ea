"""The model alone: torch eager against ONNX graphs exported three ways, on 1 and 2 threads.

Graphs of the bench's trained-head classifier: `sdpa` (torch.onnx.export of the model as
transformers loads it, SDPA attention: what corpusmill exported before), `eager` (attention
written out), `eager-fused` (then onnxruntime's transformer optimiser: what corpusmill
exports now for BERT-like encoders). Each runs the same length-sorted 2,048-token batches
of the first `--rows` corpus rows, interleaved with the others, `--reps` times; median
rows/s, the ratio to torch eager at the same thread count, the largest logit difference from
torch, and the process's RSS growth while the session ran (each variant in a child process).

    python bench/onnx_graph_variants.py --corpus bench/data/corpus-10k \
        --model out/models/minilm-food-classifier --json bench/results-onnx-graphs.json
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

import numpy as np

VARIANTS = ("torch", "sdpa", "eager", "eager-fused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args, *args.child)
    work = Path(tempfile.mkdtemp(prefix="cm-graphs-"))
    export_graphs(args.model, batches(args), work)
    results: dict = {"rows": args.rows, "reps": args.reps, "threads": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        runs: dict[str, list] = {v: [] for v in VARIANTS}
        for _ in range(args.reps):
            for variant in VARIANTS:
                out = subprocess.run([sys.executable, __file__, "--corpus", args.corpus,
                                      "--model", args.model, "--rows", str(args.rows),
                                      "--child", variant, str(threads), str(work), "1"],
                                     capture_output=True, text=True, check=True)
                runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
        torch_speed = statistics.median(r["rows_per_s"] for r in runs["torch"])
        table = {}
        for variant, reps in runs.items():
            speed = statistics.median(r["rows_per_s"] for r in reps)
            table[variant] = {"rows_per_s": speed, "vs_torch": speed / torch_speed,
                              "max_logit_diff": max(r["max_diff"] for r in reps),
                              "rss_growth_mib": statistics.median(r["rss_growth_mib"] for r in reps),
                              "runs": [r["rows_per_s"] for r in reps]}
            print(f"{threads} thread(s)  {variant:12s} {speed:6.1f} rows/s  "
                  f"x{speed / torch_speed:.2f} torch  max |diff| {table[variant]['max_logit_diff']:.1e}"
                  f"  RSS +{table[variant]['rss_growth_mib']:.0f} MiB", flush=True)
        results["threads"][threads] = table
    results["load_1min"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def batches(args) -> list[dict]:
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from corpusmill.operators.batching import pad, plan_microbatches

    files = sorted(Path(args.corpus).glob("*.parquet"))
    texts = pq.read_table(files[0], columns=["text"]).column("text").to_pylist()[:args.rows]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    encoded = tokenizer(texts, truncation=True)
    out = []
    for micro in plan_microbatches([len(ids) for ids in encoded["input_ids"]], 2048):
        ids, mask = pad([encoded["input_ids"][i] for i in micro], tokenizer.pad_token_id)
        types = pad([encoded["token_type_ids"][i] for i in micro], 0)[0]
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return out


def export_graphs(model_dir: str, batches_: list[dict], work: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from corpusmill.operators.engines.onnx_export import FUSABLE

    names = ("input_ids", "attention_mask", "token_type_ids")
    example = next(b for b in batches_ if b["input_ids"].shape[0] > 1)
    for attention in ("sdpa", "eager"):
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation=attention).eval()
        with torch.no_grad():
            torch.onnx.export(model, tuple(torch.from_numpy(example[n]) for n in names),
                              str(work / f"{attention}.onnx"), input_names=list(names),
                              output_names=["logits"],
                              dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names},
                                            "logits": {0: "batch"}},
                              opset_version=17, dynamo=False, do_constant_folding=True)
    assert model.config.model_type in FUSABLE
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(work / "eager.onnx"), model_type="bert",
                           num_heads=model.config.num_attention_heads,
                           hidden_size=model.config.hidden_size, opt_level=0)
    print("fusions:", {k: v for k, v in fused.get_fused_operator_statistics().items() if v})
    fused.save_model_to_file(str(work / "eager-fused.onnx"))
    reference = torch_logits(model_dir, batches_)
    np.save(work / "reference.npy", reference)


def torch_logits(model_dir: str, batches_: list[dict]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return np.concatenate([model(**{k: torch.from_numpy(v) for k, v in b.items()})
                               .logits.numpy() for b in batches_])


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def child(args, variant: str, threads: str, work: str, _: str) -> None:
    threads_n = int(threads)
    batches_ = batches(args)
    if variant == "torch":
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.set_num_threads(threads_n)
        model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()

        def run(some=batches_):
            with torch.inference_mode():
                return np.concatenate([model(**{k: torch.from_numpy(v) for k, v in b.items()})
                                       .logits.numpy() for b in some])
    else:
        from corpusmill.operators.engines.onnx_export import open_session

        session = open_session(os.path.join(work, f"{variant}.onnx"), threads=threads_n)

        def run(some=batches_):
            return np.concatenate([session.run(None, b)[0] for b in some])
    before = rss_mib()
    run(batches_[-3:])  # warm-up on the longest batches
    start = time.perf_counter()
    logits = run()
    seconds = time.perf_counter() - start
    reference = np.load(os.path.join(work, "reference.npy"))
    print(json.dumps({"rows_per_s": args.rows / seconds, "rss_growth_mib": rss_mib() - before,
                      "max_diff": float(np.abs(logits - reference).max())}))


if __name__ == "__main__":
    main()
