"""Does the driver grow with the corpus? `corpusmill validate` (the preflight every run does:
files, footers, fingerprints, the id check, the model) on corpora of growing size, whole
process: wall time, CPU seconds (user + system) and the process's own peak RSS (os.wait4's
ru_usage; validate starts no Ray, so this is all the driver holds). On S3 also the moto
server's CPU seconds and the requests it answered during each run: a Python process on the
same cores. Medians of `--reps` runs, the load average beside each.

Corpora (generated once under bench/data/driver-scale/, git-ignored), string ids `doc-<n>`:
    rows-200k, rows-4m, rows-20m   4 Parquet files, short texts
    files-1, files-50, files-2000, files-10000   that many small local files of 20 rows
                                 (files-1: the fixed part, imports and the model)
    s3-files-1000   1,000 small files on a local S3 API server (moto, tests/object_store.py)

`--run CORPUS` instead runs the job once (`corpusmill run`, the tiny model) over a row corpus
(rows-4m, or a smaller rows-<n>k / rows-<n>m made on demand) or over s3-files-1000 (the
output on the same moto server), checks that every id was written once, and reports the
driver's peak RSS as the run's manifest records it (stats.driver.peak_rss_mb) beside the
process's own.

Run it once per code state and label the results; the JSON keeps one entry per label:
    python bench/bench_driver_scale.py --label after --json bench/results-driver-scale.json
or, better on a shared machine, two code states side by side, run by run (same load):
    git archive BASE | tar -x -C /tmp/base
    python bench/bench_driver_scale.py --tree before=/tmp/base after=. --only files-10000 ...
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "bench" / "data" / "driver-scale"
ROW_CORPORA = {"rows-200k": 200_000, "rows-4m": 4_000_000, "rows-20m": 20_000_000}
FILE_CORPORA = {"files-1": 1, "files-50": 50, "files-2000": 2_000, "files-10000": 10_000}
S3_FILES = 1_000
SMALL_FILE_ROWS = 20
WORDS = ("river stone market paper light engine garden winter signal harbour quiet number "
         "letter window morning").split()


def texts(n: int, seed: int) -> pa.Array:
    """`n` short texts drawn from a fixed set of 997 sentences."""
    import random

    rng = random.Random(seed)
    pool = pa.array([" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20)))
                     for _ in range(997)])
    import numpy as np

    return pool.take(pa.array((np.arange(n, dtype=np.int64) * 7919 + seed) % 997))


def ids(start: int, n: int) -> pa.Array:
    numbers = pc.cast(pa.array(range(start, start + n), pa.int64()), pa.string())
    return pc.binary_join_element_wise("doc-", pc.utf8_lpad(numbers, 9, "0"), "")


def make_rows(folder: Path, rows: int, files: int = 4) -> None:
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    per_file = rows // files
    for i in range(files):
        start = i * per_file
        for_file = per_file
        table = pa.table({"id": ids(start, for_file), "text": texts(for_file, i)})
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=1 << 20)
    (folder / "done").write_text("")


def make_files(folder: Path, files: int) -> None:
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        table = pa.table({"id": ids(i * SMALL_FILE_ROWS, SMALL_FILE_ROWS),
                          "text": texts(SMALL_FILE_ROWS, i)})
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    (folder / "done").write_text("")


def validate(job: Path, env: dict | None = None, tree: Path = REPO) -> dict:
    """Wall seconds, CPU seconds (user + system) and peak RSS MiB of one `corpusmill validate`
    process running the code of checkout `tree` (PYTHONPATH and working folder; the module it
    imported is checked)."""
    env = {**(env or os.environ), "PYTHONPATH": str(tree)}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", _VALIDATE, str(job)], cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"validate {job} failed:\n{out[-1500:]}\n{err[-1500:]}")
    imported = Path(err.split("imported ", 1)[1].split()[0]) if "imported " in err else None
    if imported is None or not imported.is_relative_to(tree):
        raise SystemExit(f"validate ran {imported}, not the code of {tree}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


# `corpusmill validate JOB`, saying which corpus module it imported (jobs/stores/corpus.py
# since the layout of issue 25, jobs/corpus.py before: either code state can be measured)
_VALIDATE = ("import os, sys, corpusmill.jobs as jobs; "
             "corpus = __import__('corpusmill.jobs.stores.corpus' if any(os.path.isdir("
             "os.path.join(p, 'stores')) for p in jobs.__path__) else 'corpusmill.jobs.corpus', "
             "fromlist=['_']); "
             "from corpusmill.jobs.cli import main; "
             "print('imported', corpus.__file__, file=sys.stderr); "
             "sys.exit(main(['validate', sys.argv[1]]))")


def measure(name: str, job: Path, reps: int, env: dict | None = None,
            trees: dict[str, Path] | None = None, server=None) -> dict[str, dict]:
    """label -> medians and runs of `reps` validate runs per code tree, interleaved (rep 1 of
    each tree, then rep 2...) so that both see the same load. `server`: the moto server,
    whose CPU seconds and requests during each run are recorded too."""
    trees = trees or {"": REPO}
    runs: dict[str, list] = {label: [] for label in trees}
    for _ in range(reps):
        for label, tree in trees.items():
            load = os.getloadavg()[0]
            if server is not None:
                moto_cpu, mark = server.cpu_seconds(), server.log_size()
            run = validate(job, env, tree)
            run["load_1min"] = round(load, 1)
            if server is not None:
                run["moto_cpu_s"] = round(server.cpu_seconds() - moto_cpu, 2)
                run["moto_requests"] = len(server.requests(mark))
            runs[label].append(run)
            print(f"{name:14s} {label:8s} " + "  ".join(f"{k} {v}" for k, v in run.items()),
                  flush=True)
    results = {}
    for label, done in runs.items():
        keys = [k for k in done[0] if k != "load_1min"]
        results[label] = {**{k: statistics.median(r[k] for r in done) for k in keys},
                          "runs": done}
    return results


def job_file(folder: Path, name: str, model: str, input_path: str, output: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"task": "text-classification", "model": model,
                                    "input": input_path, "output": output,
                                    "id_column": "id"}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", help="the code state measured (this checkout): before/after")
    parser.add_argument("--tree", nargs="*", metavar="LABEL=PATH", default=[],
                        help="measure these checkouts' code instead, interleaved run by run "
                             "(e.g. before=/tmp/base after=.)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="corpus names to measure (default: all)")
    parser.add_argument("--json", default=str(REPO / "bench" / "results-driver-scale.json"))
    parser.add_argument("--run", help="run the job once over this row corpus (or "
                                      "s3-files-1000) instead")
    args = parser.parse_args()
    trees = {label: Path(path).resolve() for label, path in
             (item.split("=", 1) for item in args.tree)} or {args.label: REPO}
    if None in trees:
        parser.error("give --label, or --tree LABEL=PATH ...")

    from tests.tiny_models import build_bert_classifier

    DATA.mkdir(parents=True, exist_ok=True)
    model = DATA / "tiny-classifier"
    if not (model / "config.json").exists():
        build_bert_classifier(model, num_labels=2)
    jobs = DATA / "jobs"
    jobs.mkdir(exist_ok=True)
    if args.run:
        return full_run(args, jobs, model)
    wanted = lambda name: not args.only or name in args.only  # noqa: E731
    results: dict[str, dict] = {label: {} for label in trees}

    def record(name: str, rows: int, files: int, measured: dict[str, dict]) -> None:
        for label, found in measured.items():
            results[label][name] = {"rows": rows, "files": files, **found}

    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    for name, rows in ROW_CORPORA.items():
        if wanted(name):
            make_rows(DATA / name, rows)
            job = job_file(jobs, name, str(model), str(DATA / name), str(DATA / "out" / name))
            record(name, rows, 4, measure(name, job, args.reps, trees=trees))
    for name, files in FILE_CORPORA.items():
        if wanted(name):
            make_files(DATA / name, files)
            job = job_file(jobs, name, str(model), str(DATA / name), str(DATA / "out" / name))
            record(name, files * SMALL_FILE_ROWS, files,
                   measure(name, job, args.reps, trees=trees))
    if wanted("s3-files-1000"):
        with s3_corpus(jobs, model) as (server, job, env):
            record("s3-files-1000", S3_FILES * SMALL_FILE_ROWS, S3_FILES,
                   measure("s3-files-1000", job, args.reps, env, trees, server))
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    path = Path(args.json)
    report = json.loads(path.read_text()) if path.exists() else {}
    for label, found in results.items():
        ratios = {}
        if "rows-200k" in found and "rows-20m" in found:
            small, large = found["rows-200k"], found["rows-20m"]
            ratios = {"peak RSS 20M / 200k": round(large["peak_rss_mib"] / small["peak_rss_mib"],
                                                   3),
                      "wall 20M / 200k": round(large["wall_s"] / small["wall_s"], 3)}
        entry = {"reps": args.reps, "cpus": os.cpu_count(), "uptime_before": uptime_before,
                 "uptime_after": uptime_after, "results": found, "ratios": ratios,
                 "code": str(trees[label]),
                 "interleaved_with": [other for other in trees if other != label],
                 "note": "2-core machine shared with other engineers' work; see the load "
                         "averages"}
        report[label] = {**report.get(label, {}), **entry,
                         "results": {**report.get(label, {}).get("results", {}), **found}}
        print(label, json.dumps({name: {k: v for k, v in r.items() if k != "runs"}
                                 for name, r in found.items()}, indent=1))
        print(ratios)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(uptime_before, uptime_after, sep="\n")


def corpus_rows(name: str) -> int:
    """rows-200k -> 200,000; rows-4m -> 4,000,000."""
    size = name.removeprefix("rows-")
    return int(float(size[:-1]) * {"k": 1_000, "m": 1_000_000}[size[-1]])


def full_run(args, jobs: Path, model: Path) -> None:
    """One `corpusmill run` over a row corpus, or over the 1,000 small files on moto
    (`--run s3-files-1000`): wall time, the process's peak RSS, the driver peak RSS its
    manifest records, and every id written exactly once (read back from the output)."""
    import shutil

    if args.run == "s3-files-1000":
        rows = S3_FILES * SMALL_FILE_ROWS
        with s3_corpus(jobs, model) as (server, job, env):
            result = _run_once(job, env, lambda: server.read_text("s3://corpus/out/.corpusmill/"
                                                                  "manifest.json"),
                               lambda: server.read_table("s3://corpus/out/", ["id"]), rows,
                               S3_FILES)
    else:
        rows = corpus_rows(args.run)
        make_rows(DATA / args.run, rows)
        out = DATA / "out" / f"run-{args.run}"
        shutil.rmtree(out, ignore_errors=True)
        job = job_file(jobs, f"run-{args.run}", str(model), str(DATA / args.run), str(out))
        result = _run_once(job, None, lambda: (out / ".corpusmill" / "manifest.json").read_text(),
                           lambda: pq.ParquetDataset(str(out)).read(columns=["id"]), rows, 4)
    print(json.dumps(result, indent=1))
    path = Path(args.json)
    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault(args.label, {}).setdefault("runs", {})[args.run] = result
    path.write_text(json.dumps(report, indent=2) + "\n")
    if not result["every_id_once"]:
        raise SystemExit("not every id was written exactly once")


def _run_once(job: Path, env: dict | None, manifest_text, written_ids, rows: int,
              files: int) -> dict:
    """`corpusmill run JOB` as a process: its figures, and whether every id was written once."""
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "corpusmill.jobs.cli", "run", str(job)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    output = proc.stdout.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"run failed:\n{output[-3000:]}")
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    manifest = json.loads(manifest_text())
    written = written_ids().column("id")
    unique = pc.count_distinct(written).as_py()
    return {"rows": rows, "files": files, "wall_s": round(wall, 1),
            "process_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "manifest_driver_peak_rss_mb": manifest["stats"]["driver"]["peak_rss_mb"],
            "executor": manifest.get("placement", {}).get("executor"),
            "rows_out": manifest["summary"]["rows_out"], "ids_written": len(written),
            "ids_distinct": unique, "every_id_once": len(written) == unique == rows,
            "uptime_before": uptime_before, "uptime_after": uptime_after}


@contextlib.contextmanager
def s3_corpus(jobs: Path, model: Path, log: Path | None = None):
    """(server, job, environment): 1,000 small files uploaded to a fresh local moto S3 server
    (its request log in `log`, or a temporary file), and the job that validates them there."""
    import tempfile

    from tests.object_store import MotoS3

    local = DATA / "files-s3"
    make_files(local, S3_FILES)
    with tempfile.TemporaryDirectory() as staging:
        server = MotoS3(log=log or Path(staging) / "moto.log").start()
        try:
            (Path(staging) / "in").mkdir()
            for path in sorted(local.glob("*.parquet")):
                os.link(path, Path(staging) / "in" / path.name)
            server.upload(Path(staging) / "in", "s3://corpus/in/")
            job = job_file(jobs, "s3-files-1000", str(model), "s3://corpus/in/",
                           "s3://corpus/out/")
            yield server, job, {**os.environ, **server.env("admin")}
        finally:
            server.stop()


if __name__ == "__main__":
    main()
