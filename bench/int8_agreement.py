"""int8 schemes against float32 on one text classifier: label agreement and speed ratio.

Every scheme runs the same forward loop as bench_classification.py's `forward-sorted` mode
(the first --rows rows of the corpus, tokenized, length-sorted token-budget micro-batches,
operators.batching's plan_microbatches / pad) in this one process, with --threads torch
threads. Reported per scheme: label agreement with float32 and the number of flipped rows,
the mean relative logit error, and the speed ratio against float32.

Speed is measured on a spread of --speed-batches micro-batches (every k-th of the plan), float32
and every scheme timed interleaved on the same batches, --reps times; the ratio is the median
over repetitions of (float32 seconds / scheme seconds), so a machine shared with other work
shifts both sides of each ratio alike. Absolute rows/s are not printed for that reason.

Schemes:
  torch-dynamic   torch.ao quantize_dynamic, per-channel int8 weights, 7-bit activations with
                  one scale per micro-batch (what `dtype: int8` did first)
  w8a7-token      int8_schemes with 8-bit weights, 7-bit activations, per-token scales
  w7a8-tensor     int8_schemes with 7-bit weights, 8-bit activations, per-tensor scale
  w7a8-token      int8_schemes.quantize_int8 defaults: 7-bit weights, 8-bit activations,
                  one scale per token
  w7a8-token-keepN  the same with the listed --keep-float layers left in float32

    python bench/make_corpus.py --rows 10000 --out bench/data/corpus-10k
    python bench/make_bench_classifier.py out/models/minilm-food-classifier
    python bench/int8_agreement.py --corpus bench/data/corpus-10k \\
        --model out/models/minilm-food-classifier --rows 3000
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).parents[1]
SCHEMES = ["torch-dynamic", "w8a7-token", "w7a8-tensor", "w7a8-token"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="folder of Parquet files with a text column")
    parser.add_argument("--model", required=True, help="sequence-classification model folder")
    parser.add_argument("--rows", type=int, default=3000, help="first N rows of the corpus")
    parser.add_argument("--max-tokens", type=int, default=2048, help="micro-batch token budget")
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated, see above")
    parser.add_argument("--keep-float", default="",
                        help="comma-separated Linear names kept float32 in the w7a8-token-keep "
                             "scheme (added when given), e.g. classifier,pooler.dense")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-batches", type=int, default=12,
                        help="micro-batches timed per repetition (0: skip the speed test)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved timing repetitions")
    return parser.parse_args()


def build(name: str, model, keep_float: tuple[str, ...]):
    """A quantised copy of the float32 `model` for scheme `name`."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from int8_schemes import quantize_int8

    model = copy.deepcopy(model)
    if name == "torch-dynamic":
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)
    options = {"w8a7-token": dict(weight_bits=8, reduce_range=True),
               "w7a8-tensor": dict(per_token=False),
               "w7a8-token": {},
               "w7a8-token-keep": dict(keep_float=keep_float)}
    if name not in options:
        raise SystemExit(f"unknown scheme {name!r}; known: {', '.join(options)}, torch-dynamic")
    return quantize_int8(model, **options[name])


def micro_batches(corpus: str, model: str, rows: int, max_tokens: int):
    """[(row indices, input_ids, attention_mask)] as the forward loop plans them."""
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoTokenizer

    from corpusmill.operators.batching import pad, plan_microbatches

    texts = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()[:rows]
    tokenizer = AutoTokenizer.from_pretrained(model)
    ids = tokenizer(texts, truncation=True)["input_ids"]
    out = []
    for batch in plan_microbatches([len(x) for x in ids], max_tokens):
        input_ids, mask = pad([ids[i] for i in batch], tokenizer.pad_token_id)
        out.append((torch.from_numpy(batch), torch.from_numpy(input_ids), torch.from_numpy(mask)))
    return out, len(texts)


def all_logits(model, batches, rows: int):
    import torch

    out = torch.empty(rows, model.config.num_labels)
    with torch.inference_mode():
        for index, input_ids, mask in batches:
            out[index] = model(input_ids=input_ids, attention_mask=mask).logits
    return out


def seconds(model, batches) -> float:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        for _, input_ids, mask in batches:
            model(input_ids=input_ids, attention_mask=mask)
    return time.perf_counter() - start


def main(args: argparse.Namespace) -> None:
    import os

    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(args.threads)
    names = [s for s in args.schemes.split(",") if s]
    keep = tuple(s for s in args.keep_float.split(",") if s)
    if keep:
        names.append("w7a8-token-keep")
    batches, rows = micro_batches(args.corpus, args.model, args.rows, args.max_tokens)
    fp32 = AutoModelForSequenceClassification.from_pretrained(
        args.model, dtype=torch.float32).eval()
    models = {name: build(name, fp32, keep) for name in names}
    print(f"{rows} rows, {len(batches)} micro-batches of <= {args.max_tokens} tokens, "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}"
          + (f"; kept float32: {', '.join(keep)}" if keep else ""), flush=True)

    reference = all_logits(fp32, batches, rows)
    labels = reference.argmax(-1)
    results = {}
    for name, model in models.items():
        logits = all_logits(model, batches, rows)
        error = ((logits - reference).norm(dim=-1) / reference.norm(dim=-1)).mean().item()
        flips = int((logits.argmax(-1) != labels).sum())
        results[name] = {"agreement": 1 - flips / rows, "flips": flips, "error": error}
        print(f"  {name}: agreement {1 - flips / rows:.4f}", flush=True)

    if args.speed_batches:
        step = max(1, len(batches) // args.speed_batches)
        timed = batches[::step][:args.speed_batches]
        ratios = {name: [] for name in models}
        seconds(fp32, timed[:1])  # warm-up
        for _ in range(args.reps):
            for name, model in models.items():
                base = seconds(fp32, timed)
                ratios[name].append(base / seconds(model, timed))
        for name in models:
            results[name]["speed"] = statistics.median(ratios[name])
            results[name]["spread"] = (min(ratios[name]), max(ratios[name]))

    print(f"\n{'scheme':18s} {'agreement':>9s} {'flips':>6s} {'logit rel. err':>14s} "
          f"{'speed vs fp32 (median, min-max)':>32s}")
    for name, r in results.items():
        speed = (f"{r['speed']:.2f}x ({r['spread'][0]:.2f}-{r['spread'][1]:.2f})"
                 if "speed" in r else "-")
        print(f"{name:18s} {r['agreement']:9.4f} {r['flips']:6d} {r['error']:14.4f} {speed:>32s}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(parse_args())
