"""Chaos at scale: a job of 20,000+ rows hit at 20 random moments of its progress (when the
committed rows pass 20 random points of the corpus, sorted), alternately
  - the driver: SIGKILL of the whole process tree (driver, its Ray, every worker), then the
    same command is run again, and
  - one inference actor: SIGKILL of one `MapWorker(MapBatches(Infer))` process; the run goes on.
At the end every input id must be in the output exactly once, every row equal to a clean run's
(label and score), and after each driver kill the rerun must keep what was committed.

    python bench/bench_chaos.py --rows 20000 --kills 20 --json bench/results-chaos.json

Figures printed (and written with --json): the kill points (kind, seconds into its run, rows
committed then), rows lost (ids missing), rows doubled (ids written twice), rows differing
from the clean run, and the fraction of committed work kept: over the driver kills, rows
committed at the kill that the next run found committed and did not redo, divided by rows
committed at the kill.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO))
from tests.corpora import WORDS  # noqa: E402
from tests.tiny_models import build_bert_classifier  # noqa: E402

INFER_ACTOR = "MapWorker(MapBatches(Infer))"


def committed(output: Path) -> int:
    total = 0
    for path in (output / ".corpusmill" / "checkpoint").glob("*.parquet"):
        if ".pending." in path.name:
            continue
        try:
            total += pq.read_metadata(path).num_rows
        except Exception:  # noqa: BLE001 - being written
            pass
    return total


def data_files(output: Path) -> dict[str, int]:
    """Readable data files (name -> rows) right now."""
    files = {}
    for path in output.glob("*.parquet"):
        try:
            files[path.name] = pq.read_metadata(path).num_rows
        except Exception:  # noqa: BLE001 - half-written
            pass
    return files


def make_corpus(folder: Path, rows: int, seed: int) -> None:
    import pyarrow as pa

    rng = random.Random(seed)
    per_file = 2000
    for start in range(0, rows, per_file):
        n = min(per_file, rows - start)
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80))) for _ in range(n)]
        ids = [f"doc-{start + i}" for i in range(n)]
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"doc_id": ids, "text": texts}),
                       folder / f"part-{start // per_file:03d}.parquet", row_group_size=500)


class Run:
    """`corpusmill run JOB` in its own process group with its own Ray temp dir."""

    def __init__(self, job: Path):
        self.tmp = tempfile.mkdtemp(prefix="cmchaos")
        env = {**os.environ, "RAY_TMPDIR": self.tmp, "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        self.log = Path(self.tmp) / "cli.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "corpusmill.jobs.cli", "run", str(job)],
                                     cwd=REPO, env=env, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill_tree(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        subprocess.run(["pkill", "-9", "-f", self.tmp])

    def actors(self) -> list:
        """The run's inference actors (processes of its own Ray, below the driver)."""
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [p for p in tree if INFER_ACTOR in " ".join(_cmdline(p))]

    def kill_one_actor(self) -> bool:
        actors = self.actors()
        if not actors:
            return False
        random.choice(actors).kill()
        return True

    def wait(self) -> int:
        code = self.proc.wait()
        subprocess.run(["pkill", "-9", "-f", self.tmp])
        return code

    def output(self) -> str:
        return self.log.read_text()


def _cmdline(proc) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def write_job(path: Path, model: Path, corpus: Path, output: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "task": "text-classification", "model": str(model), "input": str(corpus),
        "output": str(output), "id_column": "doc_id", "keep_columns": [],
        "batching": {"window_rows": 256}}))
    return path


def main(args) -> int:
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    model = build_bert_classifier(work / "model", num_labels=3)
    corpus = work / "corpus"
    make_corpus(corpus, args.rows, args.seed)

    started = time.monotonic()
    clean_job = write_job(work / "clean.yaml", model, corpus, work / "clean")
    assert Run(clean_job).wait() == 0, "the clean run failed"
    clean_seconds = time.monotonic() - started
    print(f"clean run: {args.rows} rows in {clean_seconds:.0f} s", flush=True)

    job = write_job(work / "chaos.yaml", model, corpus, work / "chaos")
    output = work / "chaos"
    kills, at_kill = [], []
    # the moments: committed-row counts spread at random over the job (a kill lands once the
    # job has committed that many rows), so every kill hits work in progress
    points = sorted(rng.sample(range(args.rows // 50, args.rows - args.rows // 50), args.kills))
    run = Run(job)
    for number, point_rows in enumerate(points):
        kind = "driver" if number % 2 == 0 else "actor"
        while run.alive() and committed(output) < point_rows:
            time.sleep(0.05)
        if not run.alive():
            print(f"  the run ended before {point_rows} rows were committed", flush=True)
            break
        point = {"kind": kind, "at_committed": point_rows,
                 "seconds_into_run": round(time.monotonic() - run.started, 1)}
        if kind == "driver":
            run.kill_tree()
            point["committed"] = committed(output)
            at_kill.append(data_files(output))
            run = Run(job)
        else:
            point["committed"] = committed(output)
            if not run.kill_one_actor():
                point["kind"] = "actor (none running: skipped)"
        kills.append(point)
        print(f"kill {len(kills):2d}: {point}", flush=True)
    code = run.wait()
    print(f"last run exit {code}:\n" + "\n".join(run.output().splitlines()[-8:]), flush=True)

    manifest = json.loads((output / ".corpusmill" / "manifest.json").read_text())
    result = compare(work / "clean", output, args.rows)
    result.update({"rows": args.rows, "kills": kills, "clean_run_seconds": round(clean_seconds),
                   "last_exit": code, "status": manifest["status"]})
    # kept fraction: what each rerun after a driver kill found committed, against what was
    # committed at the kill (the checkpoint is the rerun's only knowledge of earlier work)
    driver_kills = [k for k in kills if k["kind"] == "driver"]
    committed_at_kills = sum(k["committed"] for k in driver_kills)
    final = set(data_files(output))
    kept = sum(rows for files in at_kill for name, rows in files.items() if name in final)
    result["committed_at_driver_kills"] = committed_at_kills
    result["kept_at_driver_kills"] = kept
    result["kept_fraction"] = round(kept / committed_at_kills, 4) if committed_at_kills else None
    print(json.dumps({k: v for k, v in result.items() if k != "kills"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    ok = (not result["rows_lost"] and not result["rows_doubled"] and not result["rows_differing"]
          and code == 0)
    return 0 if ok else 1


def compare(clean: Path, chaos: Path, rows: int) -> dict:
    a = pq.read_table(clean, columns=["doc_id", "label", "score"]).to_pylist()
    b = pq.read_table(chaos, columns=["doc_id", "label", "score"]).to_pylist()
    ids = [r["doc_id"] for r in b]
    expected = {f"doc-{i}" for i in range(rows)}
    got = {r["doc_id"]: r for r in b}
    ref = {r["doc_id"]: r for r in a}
    differing = [i for i in got if i in ref and (got[i]["label"] != ref[i]["label"]
                                                 or abs(got[i]["score"] - ref[i]["score"]) > 1e-4)]
    return {"rows_out": len(b), "rows_lost": len(expected - set(ids)),
            "rows_doubled": len(ids) - len(set(ids)), "rows_differing": len(differing)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    sys.exit(main(parser.parse_args()))
