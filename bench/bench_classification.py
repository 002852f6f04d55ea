"""Text classification side by side, one corpus, one run, each mode a separate process:

  pipeline-default  transformers.pipeline("text-classification") at its default batch size (1)
  pipeline-32       the same with batch_size=32
  forward-sorted    the practical limit: tokenize all, sort by length, token-budget batches,
                    plain forward passes (no Ray, no I/O beyond reading the corpus)
  corpusmill        `corpusmill run` end to end with the defaults (backend auto; executor
                    auto: on a machine of <= 4 cores, in the command's own process, no Ray):
                    read, tokenize, infer, write
  corpusmill-ray    the same with resources.executor: ray (Ray start-up, an actor pool)
  corpusmill-ray-int8  resources.executor: ray with dtype: int8
  corpusmill-torch  the same with resources.backend: torch
  corpusmill-onnx   the same with resources.backend: onnxruntime (graph exported beforehand,
                    untimed: the export is once per model, cached)
  corpusmill-onnx-int8, corpusmill-torch-int8
                    resources.dtype: int8 on each backend
  corpusmill-before `corpusmill run` with the defaults, from the tree of git ref `--before`
                    (to compare a change with what it replaced in the same run)

Every figure is for the whole process, start to exit; with `--reps N` the modes run
interleaved (mode A, B, C, then A, B, C again...) and medians are reported, with the machine's
load average beside every run. Prints rows/s, non-pad tokens/s,
padding efficiency, peak RSS of the process tree (Ray's processes included), useful GFLOP/s
(2 x non-embedding parameters per non-pad token) against an fp32 matmul peak measured here,
and label agreement between modes.

    python bench/make_corpus.py --rows 10000 --out bench/data/corpus-10k
    python jobs/examples/make_minilm_classifier.py out/models/minilm-classifier
    python bench/bench_classification.py --corpus bench/data/corpus-10k \
        --model out/models/minilm-classifier --json bench/results-10k.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).parents[1]
MODES = ["pipeline-default", "pipeline-32", "forward-sorted", "corpusmill", "corpusmill-int8"]
BACKENDS = {"corpusmill": {}, "corpusmill-int8": {"dtype": "int8"},
            "corpusmill-ray": {"executor": "ray"},
            "corpusmill-ray-int8": {"executor": "ray", "dtype": "int8"},
            "corpusmill-torch": {"backend": "torch"},
            "corpusmill-torch-int8": {"backend": "torch", "dtype": "int8"},
            "corpusmill-onnx": {"backend": "onnxruntime"},
            "corpusmill-onnx-int8": {"backend": "onnxruntime", "dtype": "int8"},
            "corpusmill-before": {}}


# ---------------------------------------------------------------- parent: orchestration

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="folder of Parquet files (id, text)")
    parser.add_argument("--model", required=True, help="sequence-classification model folder")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--reps", type=int, default=1, help="runs of every mode, interleaved")
    parser.add_argument("--before", help="git ref for mode corpusmill-before")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="passed to `corpusmill run --set` (e.g. resources.concurrency=1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    texts_ids = read_corpus(args.corpus)
    stats = token_stats(args.model, [t for _, t in texts_ids])
    peak = matmul_peak_gflops(args.threads)
    flop_per_token = 2 * non_embedding_params(args.model)
    print(f"corpus: {len(texts_ids)} rows, {stats['tokens']} non-pad tokens "
          f"(median {stats['median']} per row); fp32 matmul peak {peak:.0f} GFLOP/s on "
          f"{args.threads} threads; {flop_per_token / 1e6:.1f} MFLOP per token")
    work = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    modes = args.modes.split(",")
    envs = {mode: None for mode in modes}
    if "corpusmill-before" in modes:
        envs["corpusmill-before"] = tree_env(args.before, work / "before")
    prebuild_graphs(args, modes, work)
    runs: dict[str, list] = {mode: [] for mode in modes}
    for rep in range(args.reps):
        for mode in modes:
            labels = work / f"{mode}.json"
            if mode.startswith("corpusmill"):  # time the CLI process alone
                job = corpusmill_job(args, work / f"{mode}-{rep}", BACKENDS[mode])
                cmd = [sys.executable, "-m", "corpusmill.jobs.cli", "run", str(job)]
                cmd += [f"--set={item}" for item in args.overrides]
            else:
                cmd = [sys.executable, __file__, "--child", mode, "--corpus", args.corpus,
                       "--model", args.model, "--threads", str(args.threads),
                       "--labels-out", str(labels)]
            load = os.getloadavg()[0]
            wall, rss, rc, out = run_measured(cmd, env=envs[mode])
            if rc != 0:
                print(f"{mode}: FAILED (exit {rc})\n{out[-2000:]}")
                continue
            if mode.startswith("corpusmill"):
                info = corpusmill_after(args, job, labels)
            else:
                info = json.loads(out.strip().splitlines()[-1])
            runs[mode].append({"wall_s": wall, "peak_rss_mib": rss / 2**20, "load_1min": load,
                               "padding_efficiency": info.get("padding_efficiency")})
            print(f"rep {rep + 1} {mode:21s} {len(texts_ids) / wall:7.1f} rows/s  wall "
                  f"{wall:6.1f} s  peak RSS {rss / 2**20:6.0f} MiB  load {load:.1f}", flush=True)
            if args.json:  # what is done so far, should the run be cut short
                Path(args.json + ".partial").write_text(json.dumps(runs, indent=1))
    results = {}
    for mode, done in runs.items():
        if not done:
            continue
        wall = statistics.median(r["wall_s"] for r in done)
        tokens_per_s = stats["tokens"] / wall
        results[mode] = {
            "rows_per_s": len(texts_ids) / wall, "wall_s": wall,
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in done),
            "tokens_per_s": tokens_per_s, "padding_efficiency": done[0]["padding_efficiency"],
            "useful_gflops": tokens_per_s * flop_per_token / 1e9,
            "labels": str(work / f"{mode}.json"), "runs": done}
        print(f"median {mode:21s} {len(texts_ids) / wall:7.1f} rows/s  {tokens_per_s:8.0f} tok/s"
              f"  pad-eff {fmt(results[mode]['padding_efficiency'])}  peak RSS "
              f"{results[mode]['peak_rss_mib']:7.0f} MiB  {results[mode]['useful_gflops']:5.1f} "
              f"GFLOP/s ({100 * results[mode]['useful_gflops'] / peak:.0f}% of peak)")
    report = {"rows": len(texts_ids), "tokens": stats["tokens"], "matmul_peak_gflops": peak,
              "flop_per_token": flop_per_token, "reps": args.reps, "modes": results,
              "ratios": ratios(results), "agreement": agreements(results)}
    for name, value in {**report["ratios"], **report["agreement"]}.items():
        print(f"{name}: {value:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def tree_env(ref: str | None, folder: Path) -> dict:
    """Environment running corpusmill from git ref `ref` (its own `corpusmill.*` rooms, mapped
    by a sitecustomize module ahead of the installed package)."""
    if not ref:
        raise SystemExit("mode corpusmill-before needs --before REF")
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    shim = folder / "_shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM.format(root=str(folder)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(shim)])}


SHIM = '''import importlib.abc, importlib.util, os, sys
class _Rooms(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "corpusmill" and parts[1] in ("jobs", "operators", "pipelines"):
            base = os.path.join({root!r}, parts[1], *parts[2:])
            if os.path.isdir(base):
                return importlib.util.spec_from_file_location(
                    name, os.path.join(base, "__init__.py"), submodule_search_locations=[base])
            if os.path.isfile(base + ".py"):
                return importlib.util.spec_from_file_location(name, base + ".py")
        return None
sys.meta_path.insert(0, _Rooms())
'''


def prebuild_graphs(args, modes: list[str], work: Path) -> None:
    """Export (and quantise) the ONNX graphs the onnxruntime modes load, before any timing."""
    for mode in modes:
        backend = BACKENDS.get(mode, {})
        if mode in ("corpusmill-before",) or backend.get("backend") == "torch" or \
                mode not in BACKENDS:
            continue
        job = corpusmill_job(args, work / f"prebuild-{mode}", backend)
        start = time.monotonic()
        from corpusmill.jobs.preflight import preflight
        from corpusmill.operators.engines import prepare_backend
        from corpusmill.spec import load_spec

        plan, corpus = preflight(load_spec(job))
        prepare_backend(plan, corpus)
        print(f"{mode}: graph ready in {time.monotonic() - start:.1f} s (untimed)")


def fmt(value) -> str:
    return "  n/a" if value is None else f"{value:.2f}"


def ratios(results: dict) -> dict:
    out = {}
    pipes = [results[m]["rows_per_s"] for m in ("pipeline-default", "pipeline-32") if m in results]
    for mode in [m for m in results if m.startswith("corpusmill")]:
        ours = results[mode]["rows_per_s"]
        if pipes:
            out[f"{mode} / best pipeline"] = ours / max(pipes)
        if "forward-sorted" in results:
            out[f"{mode} / forward-sorted"] = ours / results["forward-sorted"]["rows_per_s"]
    for a, b in (("corpusmill-int8", "corpusmill"), ("corpusmill-onnx-int8", "corpusmill-onnx"),
                 ("corpusmill-torch-int8", "corpusmill-torch"), ("corpusmill", "corpusmill-before"),
                 ("corpusmill-onnx", "corpusmill-torch"), ("corpusmill-torch", "corpusmill-before")):
        if a in results and b in results:
            out[f"{a} / {b}"] = results[a]["rows_per_s"] / results[b]["rows_per_s"]
            out[f"peak RSS {a} / {b}"] = results[a]["peak_rss_mib"] / results[b]["peak_rss_mib"]
    return out


def agreements(results: dict) -> dict:
    def labels(mode):
        return json.loads(Path(results[mode]["labels"]).read_text())
    out = {}
    for a, b in (("corpusmill-int8", "corpusmill"), ("corpusmill-onnx-int8", "corpusmill-onnx"),
                 ("corpusmill-torch-int8", "corpusmill-torch"),
                 ("corpusmill-onnx", "corpusmill-torch"), ("corpusmill", "pipeline-default"),
                 ("corpusmill-torch", "pipeline-default"), ("corpusmill-onnx", "pipeline-default"),
                 ("forward-sorted", "pipeline-default")):
        if a in results and b in results:
            la, lb = labels(a), labels(b)
            out[f"label agreement {a} vs {b}"] = sum(la[k] == lb[k] for k in lb) / len(lb)
            near = near_boundary(results, b)
            if near:
                out[f"label agreement {a} vs {b}, {len(near)} near-boundary rows"] = (
                    sum(la[k] == lb[k] for k in near) / len(near))
    return out


def near_boundary(results: dict, mode: str, share: float = 0.1) -> list:
    """Ids of the `share` of rows whose best score in `mode` is lowest: the rows a small
    numeric change flips, where int8's agreement is tested hardest."""
    path = Path(results[mode]["labels"]).with_suffix(".scores.json")
    if not path.exists():
        return []
    scores = json.loads(path.read_text())
    ranked = sorted(scores, key=lambda k: scores[k])
    return ranked[:max(1, int(len(ranked) * share))]


def run_measured(cmd: list[str], env: dict | None = None, on_sample=None, every_s: float = 0.5,
                 stderr=subprocess.DEVNULL) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS of the whole process tree in bytes, exit code, stdout).
    `on_sample(seconds since start)` is called at every sample (every `every_s`)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env=env)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            if on_sample is not None:
                on_sample(time.monotonic() - start)
            time.sleep(every_s)  # walking /proc costs CPU: sample sparingly
    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    return wall, peak, proc.returncode, out


def tree_rss(root: int) -> int:
    """Sum of VmRSS over `root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def read_corpus(folder: str) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder, columns=["id", "text"])
    return list(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))


def token_stats(model: str, texts: list[str]) -> dict:
    from transformers import AutoTokenizer

    lengths = sorted(len(ids) for ids in AutoTokenizer.from_pretrained(model)(
        texts, truncation=True)["input_ids"])
    return {"tokens": sum(lengths), "median": lengths[len(lengths) // 2]}


def non_embedding_params(model: str) -> int:
    from transformers import AutoModelForSequenceClassification

    m = AutoModelForSequenceClassification.from_pretrained(model)
    embedding = sum(p.numel() for n, p in m.named_parameters() if "embeddings" in n)
    return sum(p.numel() for p in m.parameters()) - embedding


def matmul_peak_gflops(threads: int, n: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


# ---------------------------------------------------------------- child: one mode

def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    ids_texts = read_corpus(args.corpus)
    if args.child == "forward-sorted":
        labels, info = run_forward_sorted(args.model, ids_texts)
    else:
        batch = 32 if args.child == "pipeline-32" else None
        labels, info = run_pipeline(args.model, ids_texts, batch)
    Path(args.labels_out).write_text(json.dumps(labels))
    print(json.dumps(info))


def run_pipeline(model: str, ids_texts, batch_size):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model, device="cpu")
    kwargs = {"batch_size": batch_size} if batch_size else {}
    texts = [t for _, t in ids_texts]
    out = pipe(texts, truncation=True, **kwargs)
    info = {"padding_efficiency": 1.0 if not batch_size else padding_efficiency(
        model, texts, lambda lengths: [list(range(i, min(i + batch_size, len(lengths))))
                                       for i in range(0, len(lengths), batch_size)])}
    return {i: o["label"] for (i, _), o in zip(ids_texts, out)}, info


def run_forward_sorted(model_dir: str, ids_texts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from corpusmill.spec import Batching
    from corpusmill.operators.batching import pad, plan_microbatches

    max_tokens = Batching().max_tokens  # the same token budget as corpusmill's default
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    ids = tokenizer([t for _, t in ids_texts], truncation=True)["input_ids"]
    batches = plan_microbatches([len(x) for x in ids], max_tokens)
    labels = {}
    padded = 0
    with torch.inference_mode():
        for batch in batches:
            input_ids, mask = pad([ids[i] for i in batch], tokenizer.pad_token_id)
            padded += input_ids.size
            logits = model(input_ids=torch.from_numpy(input_ids),
                           attention_mask=torch.from_numpy(mask)).logits
            for i, k in zip(batch, logits.argmax(-1).tolist()):
                labels[ids_texts[i][0]] = model.config.id2label[k]
    return labels, {"padding_efficiency": sum(len(x) for x in ids) / padded}


def corpusmill_job(args, work: Path, resources: dict) -> Path:
    import yaml

    work.mkdir(parents=True)
    job = work / "job.yaml"
    job.write_text(yaml.safe_dump({
        "task": "text-classification", "model": os.path.abspath(args.model),
        "input": os.path.abspath(args.corpus), "output": str(work / "out"), "id_column": "id",
        "keep_columns": [], "resources": resources}))
    return job


def corpusmill_after(args, job: Path, labels_out: Path) -> dict:
    """Labels from the output, and padding as corpusmill's batching plans it (windows of
    window_rows rows, token budget), replayed outside the timed run."""
    import pyarrow.parquet as pq

    from corpusmill.spec import load_spec

    spec = load_spec(job, args.overrides)
    table = pq.read_table(spec.output, columns=["id", "label", "score"])
    labels_out.write_text(json.dumps(dict(zip(
        table.column("id").to_pylist(), table.column("label").to_pylist()))))
    labels_out.with_suffix(".scores.json").write_text(json.dumps(dict(zip(
        table.column("id").to_pylist(), table.column("score").to_pylist()))))
    texts = [t for _, t in read_corpus(args.corpus)]
    window = spec.batching.window_rows
    eff = padding_efficiency(args.model, texts, lambda lengths: [
        [start + int(i) for i in micro]
        for start in range(0, len(lengths), window)
        for micro in _plan(lengths[start:start + window], spec.batching.max_tokens)])
    return {"padding_efficiency": eff}


def _plan(lengths, max_tokens):
    from corpusmill.operators.batching import plan_microbatches
    return plan_microbatches(lengths, max_tokens)


def padding_efficiency(model: str, texts, make_batches) -> float:
    """Non-pad tokens / padded tokens computed, for a batching given as index lists."""
    from transformers import AutoTokenizer

    lengths = [len(x) for x in AutoTokenizer.from_pretrained(model)(texts, truncation=True)["input_ids"]]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in make_batches(lengths) if len(b))
    return sum(lengths) / padded


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
