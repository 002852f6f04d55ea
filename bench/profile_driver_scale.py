"""Where the driver's CPU goes in `corpusmill validate` over many small files: one
`corpusmill validate` process under cProfile (imports included; timed by the process's CPU
time, all threads, unless `--wall`), its CPU seconds (user+sys),
and for the S3 corpus the moto server's CPU seconds and requests during the run, by kind.

cProfile sees only the thread it runs in, so the profiled process runs the inspection and id
threads serially (`concurrent.futures.ThreadPoolExecutor` replaced by an inline one before
corpusmill is imported): the profile is the work per file, not its overlap. `--threads`
keeps the real pools (the CPU figures then include their contention; the profile is only the
main thread's).

    python bench/profile_driver_scale.py --corpus s3-files-1000 --tree /path/to/checkout \
        --out /tmp/prof-after

The model's own thread (jobs/preflight.py ModelLoad: it loads while the corpus is read) is
run inline too, before the corpus. What overlaps with what, `--timeline REPS` shows instead:
when each preflight step starts and ends, in which thread, at what wall time and process CPU
(no profiler; REPS validate processes with their real threads):

    python bench/profile_driver_scale.py --corpus s3-files-1000 --timeline 3 --out /tmp/tl

The corpora are bench_driver_scale.py's (made there, under bench/data/driver-scale/).
`--tree`: the checkout whose code is measured (default: this one); the process prints the
corpus module it imported, to check (jobs/stores/corpus.py, or jobs/corpus.py in code from
before the layout of issue 25)."""
from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# The measured process: inline thread pools (unless told), cProfile around the CLI's main.
CHILD = r"""
import concurrent.futures, cProfile, os, sys, time
if os.environ.get("PROFILE_SERIAL") == "1":
    class InlineExecutor:
        def __init__(self, *args, **kwargs): pass
        def __enter__(self): return self
        def __exit__(self, *exc): return False
        def map(self, fn, *iterables): return [fn(*items) for items in zip(*iterables)]
        def submit(self, fn, *args, **kwargs):
            future = concurrent.futures.Future()
            try: future.set_result(fn(*args, **kwargs))
            except BaseException as e: future.set_exception(e)
            return future
        def shutdown(self, *args, **kwargs): pass
    concurrent.futures.ThreadPoolExecutor = InlineExecutor
profile = (cProfile.Profile() if os.environ.get("PROFILE_WALL") == "1"
           else cProfile.Profile(time.process_time))
profile.enable()
import corpusmill.jobs as jobs  # jobs/stores/ since the layout of issue 25
corpus = __import__("corpusmill.jobs.stores.corpus" if any(
    os.path.isdir(os.path.join(p, "stores")) for p in jobs.__path__)
    else "corpusmill.jobs.corpus", fromlist=["_"])
if os.environ.get("PROFILE_SERIAL") == "1":
    import corpusmill.jobs.preflight as preflight
    if hasattr(preflight, "ModelLoad"):  # the model's thread, run inline: profiled too
        def inline(self):
            self._run()
            return self
        preflight.ModelLoad.start = inline
from corpusmill.jobs.cli import main
code = main(["validate", sys.argv[1]])
profile.disable()
profile.dump_stats(sys.argv[2])
print("imported", corpus.__file__, file=sys.stderr)
sys.exit(code)
"""


# The per-file part alone: open_corpus and the id check in one process whose imports are done,
# timed by the process's CPU (all threads) and the wall clock.
CORPUS_ONLY = r"""
import json, os, resource, sys, time
import corpusmill.jobs as jobs  # jobs/stores/ since the layout of issue 25
corpus = __import__("corpusmill.jobs.stores.corpus" if any(
    os.path.isdir(os.path.join(p, "stores")) for p in jobs.__path__)
    else "corpusmill.jobs.corpus", fromlist=["_"])
from corpusmill.jobs.preflight import _check_ids_unique
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
print("imported", corpus.__file__, file=sys.stderr)
source, runs = sys.argv[1], []
for _ in range(int(sys.argv[2])):
    c, w = cpu(), time.monotonic()
    try:
        found = corpus.open_corpus(source, keep_contents=True)
    except TypeError:  # code from before keep_contents
        found = corpus.open_corpus(source)
    middle = cpu()
    _check_ids_unique(found, "id")
    runs.append({"inspect_cpu_s": round(middle - c, 3), "ids_cpu_s": round(cpu() - middle, 3),
                 "wall_s": round(time.monotonic() - w, 3)})
print(json.dumps(runs))
"""


# Where validate's wall time goes since the model loads in a thread beside the corpus
# (jobs/preflight.py ModelLoad): the start and end of each preflight step, in which thread,
# at what wall time and process CPU (all threads). No profiler: these are the real times.
TIMELINE = r"""
import json, os, sys, threading, time
t0 = time.monotonic()
marks = []
def mark(what):
    marks.append([round(time.monotonic() - t0, 2), threading.current_thread().name,
                  what, round(time.process_time(), 2)])
import corpusmill.jobs.preflight as preflight
mark("preflight imported")
def timed(name):
    step = getattr(preflight, name)
    def wrapper(*args, **kwargs):
        mark(name + " start")
        try:
            return step(*args, **kwargs)
        finally:
            mark(name + " end")
    setattr(preflight, name, wrapper)
for name in ("open_corpus", "_check_ids_unique", "_load_config", "_load_tokenizer",
             "_load_weights", "_import_for_loading"):
    if hasattr(preflight, name):  # code from before the background load has some of them
        timed(name)
if hasattr(preflight, "ModelPart"):
    result = preflight.ModelPart.result
    def waited(self):
        mark("model result: wait")
        try:
            return result(self)
        finally:
            mark("model result: got")
    preflight.ModelPart.result = waited
from corpusmill.jobs.cli import main
code = main(["validate", sys.argv[1]])
mark("done")
print("TIMELINE " + json.dumps({"marks": marks, "preflight": preflight.__file__}),
      file=sys.stderr)
sys.exit(code)
"""


def timeline(job: Path, tree: Path, env: dict, server=None) -> dict:
    """One validate's steps in time (TIMELINE), its wall and CPU seconds, and the moto
    server's CPU during it."""
    env = {**env, "PYTHONPATH": str(tree)}
    if server is not None:
        moto = server.cpu_seconds()
    load = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", TIMELINE, str(job)], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    stderr = proc.stderr.read().decode()
    found = [line for line in stderr.splitlines() if line.startswith("TIMELINE ")]
    if os.waitstatus_to_exitcode(status) != 0 or not found:
        raise SystemExit(f"validate failed:\n{stderr[-3000:]}")
    result = {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
              "load_1min": round(load, 1), **json.loads(found[0][len("TIMELINE "):])}
    if server is not None:
        result["moto_cpu_s"] = round(server.cpu_seconds() - moto, 2)
    return result


def corpus_only(source: str, tree: Path, env: dict, reps: int, server=None) -> dict:
    """CPU seconds of open_corpus and of the id check over `source`, `reps` times in one
    process (imports excluded), with the moto server's CPU and requests over all of them."""
    env = {**env, "PYTHONPATH": str(tree)}
    if server is not None:
        moto, mark = server.cpu_seconds(), server.log_size()
    done = subprocess.run([sys.executable, "-c", CORPUS_ONLY, source, str(reps)], cwd=tree,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result = {"runs": json.loads(done.stdout.strip().splitlines()[-1]),
              "imported": done.stderr.split("imported ", 1)[1].split()[0]}
    if server is not None:
        result["moto_cpu_s_per_run"] = round((server.cpu_seconds() - moto) / reps, 3)
        result["moto_requests_per_run"] = len(server.requests(mark)) / reps
    return result


def by_kind(requests: list[tuple[str, str]]) -> Counter:
    """Requests by method and whether they name an object or a bucket (a listing)."""
    return Counter(f"{method} {'object' if '/' in path.split('?')[0].strip('/') else 'bucket'}"
                   for method, path in requests)


def run_profiled(job: Path, tree: Path, out: Path, env: dict, serial: bool,
                 wall: bool = False) -> dict:
    env = {**env, "PYTHONPATH": str(tree), "PROFILE_SERIAL": "1" if serial else "0",
           "PROFILE_WALL": "1" if wall else "0"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(job), str(out) + ".prof"],
                            cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"validate failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    imported = [line for line in stderr.splitlines() if line.startswith("imported ")]
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "imported": imported[-1] if imported else "?"}


def summary(prof: Path, text: Path) -> None:
    with open(text, "w") as f:
        stats = pstats.Stats(str(prof), stream=f)
        stats.strip_dirs()
        for key in ("cumulative", "tottime"):
            print(f"==== sorted by {key}", file=f)
            stats.sort_stats(key).print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True,
                        help="s3-files-1000, or files-N: N small local files (files-1: the "
                             "fixed part, imports and the model)")
    parser.add_argument("--tree", default=str(REPO), help="the checkout whose code runs")
    parser.add_argument("--out", required=True, help="prefix of the .prof/.txt/.json written")
    parser.add_argument("--threads", action="store_true", help="keep the real thread pools")
    parser.add_argument("--wall", action="store_true",
                        help="profile wall time (waiting included) instead of CPU time")
    parser.add_argument("--corpus-only", type=int, metavar="REPS",
                        help="no profile: CPU of open_corpus and the id check alone, REPS times "
                             "in one process (imports excluded)")
    parser.add_argument("--timeline", type=int, metavar="REPS",
                        help="no profile: when each preflight step starts and ends, in which "
                             "thread (wall time and process CPU), REPS validate processes")
    args = parser.parse_args()

    import bench_driver_scale as bench

    tree, out = Path(args.tree).resolve(), Path(args.out)
    model = bench.DATA / "tiny-classifier"
    jobs = bench.DATA / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    if args.corpus_only:
        if args.corpus.startswith("files-"):
            result = corpus_only(str(bench.DATA / args.corpus), tree, dict(os.environ),
                                 args.corpus_only)
        else:
            with bench.s3_corpus(jobs, model) as (server, job, env):
                result = corpus_only("s3://corpus/in/", tree, env, args.corpus_only, server)
        result.update(load_before=load, load_after=os.getloadavg(), corpus=args.corpus)
        Path(f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
        return
    if args.timeline:
        if args.corpus.startswith("files-"):
            bench.make_files(bench.DATA / args.corpus, int(args.corpus.removeprefix("files-")))
            job = bench.job_file(jobs, args.corpus, str(model), str(bench.DATA / args.corpus),
                                 str(bench.DATA / "out" / args.corpus))
            runs = [timeline(job, tree, dict(os.environ)) for _ in range(args.timeline)]
        else:
            with bench.s3_corpus(jobs, model) as (server, job, env):
                runs = [timeline(job, tree, env, server) for _ in range(args.timeline)]
        result = {"corpus": args.corpus, "tree": str(tree), "runs": runs}
        Path(f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
        for run in runs:
            print({k: v for k, v in run.items() if k != "marks"})
            for at, thread, what, cpu in run["marks"]:
                print(f"  {at:6.2f} s  cpu {cpu:5.2f}  {thread:18s} {what}")
        return
    if args.corpus.startswith("files-"):
        bench.make_files(bench.DATA / args.corpus, int(args.corpus.removeprefix("files-")))
        job = bench.job_file(jobs, args.corpus, str(model), str(bench.DATA / args.corpus),
                             str(bench.DATA / "out" / args.corpus))
        result = run_profiled(job, tree, out, dict(os.environ), not args.threads, args.wall)
    else:
        with bench.s3_corpus(jobs, model, log=Path(f"{out}.moto.log")) as (server, job, env):
            before, mark = server.cpu_seconds(), server.log_size()
            result = run_profiled(job, tree, out, env, not args.threads, args.wall)
            result["moto_cpu_s"] = round(server.cpu_seconds() - before, 2)
            requests = server.requests(mark)
            result["moto_requests"] = len(requests)
            result["moto_requests_by_kind"] = dict(by_kind(requests))
    result.update(load_before=load, load_after=os.getloadavg(), corpus=args.corpus,
                  serial=not args.threads, timer="wall" if args.wall else "cpu",
                  tree=str(tree))
    summary(Path(f"{out}.prof"), Path(f"{out}.txt"))
    Path(f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
