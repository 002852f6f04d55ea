"""Where a row's microseconds go on the data path, stage by stage, with Ray out of the way: the
operators corpusmill runs inside Ray (read, tokenize, infer, postprocess, the Parquet write)
called in this process on the job's own blocks, one torch thread, CPU time per stage. What
Ray adds around them (scheduling, object store, the hand-off between processes) is the
difference between this and the end-to-end bench (bench/bench_plumbing.py).

    python bench/profile_data_path.py --corpus bench/data/plumb-200k \
        --model out/models/tiny-classifier --rows 20000 [--cprofile STAGE]
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", default="text-classification")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--in-actor", action="store_true",
                        help="tokenize inside the inference actor (resources.tokenize: actor)")
    parser.add_argument("--cprofile", help="print cProfile's top functions of this stage")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import torch

    from corpusmill.jobs.preflight import preflight
    from corpusmill.operators.infer import Infer
    from corpusmill.operators.postprocess import postprocess_batch
    from corpusmill.operators.readers.files import read_group
    from corpusmill.operators.tokenize import tokenize_batch
    from corpusmill.spec import parse_spec

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="cm-profile-"))
    spec = parse_spec({"task": args.task, "model": os.path.abspath(args.model),
                       "input": os.path.abspath(args.corpus), "output": str(out / "out"),
                       "id_column": "id", "keep_columns": [],
                       "resources": {"backend": args.backend}})
    plan, corpus = preflight(spec)
    plan = dataclasses.replace(plan, torch_threads=1, tokenize_in_actor=args.in_actor)
    window = spec.batching.window_rows
    stages = ["read", "tokenize", "inference", "postprocess", "write"]
    cpu: dict[str, float] = defaultdict(float)
    profiles = {s: cProfile.Profile() for s in stages}

    def timed(stage, fn, *a, **k):
        profile = profiles[stage] if args.cprofile == stage else None
        start = time.process_time()
        if profile:
            profile.enable()
        result = fn(*a, **k)
        if profile:
            profile.disable()
        cpu[stage] += time.process_time() - start
        return result

    start = time.process_time()
    infer = Infer(plan)
    model_load = time.process_time() - start
    rows = 0
    part = 0
    for f in corpus.files:
        for group in range(len(f.row_groups)):
            table = timed("read", read_group, corpus.fs, f, group, plan.read_schema.names)
            for offset in range(0, table.num_rows, window):
                block = table.slice(offset, window)
                if not args.in_actor:  # in the actor, tokenizing is timed with inference
                    block = timed("tokenize", tokenize_batch, block, plan)
                block = timed("inference", infer, block)
                block = timed("postprocess", postprocess_batch, block, plan)
                timed("write", pq.write_table, block, out / f"part-{part}.parquet")
                part += 1
                rows += block.num_rows
                if rows >= args.rows:
                    break
            if rows >= args.rows:
                break
        if rows >= args.rows:
            break
    total = sum(cpu.values())
    print(f"{rows} rows, {args.task} on {args.backend}"
          f"{', tokenized in the actor' if args.in_actor else ''}; model load "
          f"{model_load:.2f} s CPU")
    print(f"{'stage':12s} {'us/row':>8s} {'share':>6s}")
    for stage in stages:
        print(f"{stage:12s} {1e6 * cpu[stage] / rows:8.1f} {cpu[stage] / total:6.1%}")
    print(f"{'total':12s} {1e6 * total / rows:8.1f}  -> {rows / total:,.0f} rows per CPU-second")
    if args.cprofile:
        text = io.StringIO()
        pstats.Stats(profiles[args.cprofile], stream=text).sort_stats("tottime").print_stats(18)
        print(text.getvalue())
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": rows, "task": args.task, "backend": args.backend,
             "tokenize_in_actor": args.in_actor,
             "us_per_row": {s: 1e6 * cpu[s] / rows for s in stages},
             "rows_per_cpu_second": rows / total}, indent=2))


if __name__ == "__main__":
    main()
