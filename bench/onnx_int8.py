"""int8 schemes for the onnxruntime backend, on the bench's trained-head classifier: label
agreement with the float32 graph over the first `--rows` rows, and speed against float32
timed interleaved (float32 then the scheme, `--reps` times, on the same micro-batches, one
thread each: what every CPU actor runs with), median ratio. All in one process.

Variants: the product's schemes (operators/engines/onnx_quantize.py), and `dynamic-7bit` with one
kind of projection (or one encoder layer) kept in float32, to find the layers whose
quantisation moves the outputs most.

    python bench/make_corpus.py --rows 10000 --out bench/data/corpus-10k
    python bench/make_bench_classifier.py out/models/minilm-food-classifier
    python bench/onnx_int8.py --corpus bench/data/corpus-10k \
        --model out/models/minilm-food-classifier --json bench/results-onnx-int8.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).parents[1]
KINDS = {  # torch.onnx node names of BERT-like encoders
    "query": r"/attention/self/query/MatMul$", "key": r"/attention/self/key/MatMul$",
    "value": r"/attention/self/value/MatMul$", "attention-out": r"/attention/output/dense/MatMul$",
    "ffn-in": r"/intermediate/dense/MatMul$", "ffn-out": r"(?<!attention)/output/dense/MatMul$",
    "head": r"/(classifier|pooler/dense)/(MatMul|Gemm)$",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--speed-rows", type=int, default=400)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", default="")
    parser.add_argument("--engines", action="store_true",
                        help="also time torch eager against the float32 graph (same batches)")
    parser.add_argument("--json")
    args = parser.parse_args()

    from corpusmill.jobs.preflight import preflight
    from corpusmill.operators.engines import onnx_export
    from corpusmill.operators.batching import pad, plan_microbatches
    from corpusmill.operators.engines import prepare_backend, sample_windows
    from corpusmill.operators.loading import load_tokenizer
    from corpusmill.operators.engines.onnx_quantize import SCHEMES, quantize
    from corpusmill.spec import parse_spec

    spec = parse_spec({"task": "text-classification", "model": os.path.abspath(args.model),
                       "input": os.path.abspath(args.corpus), "output": "/tmp/unused",
                       "id_column": "id", "resources": {"backend": "onnxruntime"}})
    plan, corpus = preflight(spec)
    plan = prepare_backend(dataclasses.replace(plan, torch_threads=1), corpus, isolated=False)
    fp32 = plan.graph.path
    tokenizer = load_tokenizer(plan.model_ref, None, False)
    calibration = onnx_export.sample_batches({**plan.graph.request, "sample": sample_windows(
        plan, corpus, tokenizer)})
    import pyarrow.parquet as pq

    texts = pq.read_table(args.corpus, columns=["text"]).column("text").to_pylist()[:args.rows]
    enc = tokenizer(texts, truncation=True)
    batches = []
    for micro in plan_microbatches([len(x) for x in enc["input_ids"]], 2048):
        ids, mask = pad([enc["input_ids"][i] for i in micro], tokenizer.pad_token_id)
        types = pad([enc["token_type_ids"][i] for i in micro], 0)[0]
        batches.append((micro, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}))
    speed_batches = [b for _, b in batches if True][:max(1, len(batches) * args.speed_rows
                                                         // max(1, args.rows))]
    reference = labels(onnx_export.open_session(fp32, 1), batches)

    variants = {scheme: (scheme, None) for scheme in SCHEMES}
    variants.update({f"dynamic-7bit, {kind} float32": ("dynamic-7bit", re.compile(p))
                     for kind, p in KINDS.items()})
    variants.update({f"dynamic-7bit, layer {n} float32": (
        "dynamic-7bit", re.compile(rf"/layer\.{n}/.*MatMul$")) for n in range(6)})
    if args.variants:
        wanted = args.variants.split(";")
        variants = {k: v for k, v in variants.items() if k in wanted}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (scheme, keep) in variants.items():
            path = os.path.join(tmp, re.sub(r"\W+", "-", name) + ".onnx")
            quantize(fp32, path, scheme, calibration, keep_float=keep)
            session = onnx_export.open_session(path, 1)
            got = labels(session, batches)
            agree = float(np.mean(got == reference))
            ratio = speed_ratio(onnx_export.open_session(fp32, 1), session, speed_batches,
                                args.reps)
            results[name] = {"agreement": agree, "flips": int(np.sum(got != reference)),
                             "speed_vs_fp32": ratio}
            print(f"{name:42s} agreement {agree:.4f} ({results[name]['flips']} flips)  "
                  f"speed {ratio:.2f}x fp32", flush=True)
    if args.engines:
        results["torch eager vs onnxruntime float32"] = {
            "speed_vs_torch": torch_vs_onnx(plan.model_ref, fp32, speed_batches, args.reps)}
        print(f"onnxruntime float32 vs torch eager: "
              f"{results['torch eager vs onnxruntime float32']['speed_vs_torch']:.2f}x", flush=True)
    report = {"rows": len(texts), "speed_rows": sum(len(b["input_ids"]) for b in speed_batches),
              "reps": args.reps, "load": os.getloadavg(), "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def labels(session, batches) -> np.ndarray:
    out = np.zeros(sum(len(m) for m, _ in batches), dtype=np.int64)
    names = {i.name for i in session.get_inputs()}
    for micro, batch in batches:
        logits = session.run(None, {k: v for k, v in batch.items() if k in names})[0]
        out[micro] = logits.argmax(-1)
    return out


def torch_vs_onnx(model_dir: str, fp32_path: str, batches, reps: int) -> float:
    """Median over `reps` of (torch eager seconds / float32 graph seconds), interleaved, one
    thread each, on the same batches."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from corpusmill.operators.engines.onnx_export import open_session

    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    session = open_session(fp32_path, 1)
    ratios = []
    for _ in range(reps):
        start = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                model(**{k: torch.from_numpy(v) for k, v in b.items()})
        eager = time.perf_counter() - start
        start = time.perf_counter()
        for b in batches:
            session.run(None, b)
        ratios.append(eager / (time.perf_counter() - start))
    return statistics.median(ratios)


def speed_ratio(fp32, int8, batches, reps: int) -> float:
    """Median over `reps` of (float32 seconds / int8 seconds), each rep timing both back to
    back on the same batches."""
    names = {i.name for i in fp32.get_inputs()}
    feeds = [{k: v for k, v in b.items() if k in names} for b in batches]
    ratios = []
    for _ in range(reps):
        seconds = []
        for session in (fp32, int8):
            start = time.perf_counter()
            for feed in feeds:
                session.run(None, feed)
            seconds.append(time.perf_counter() - start)
        ratios.append(seconds[0] / seconds[1])
    return statistics.median(ratios)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
