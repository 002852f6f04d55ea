"""How much finished work a resume keeps: run a job, SIGKILL its whole process tree (driver,
Ray, workers) once half the rows are committed, rerun the same command, and compare what the
killed run had finished with what the rerun did not recompute.

    python bench/bench_resume.py --corpus bench/data/corpus-4k --model out/models/minilm-classifier

Figures printed (and written with --json):
  rows_total             rows in the corpus
  rows_in_files_at_kill  rows in readable output files when the kill landed (finished work)
  rows_committed_at_kill rows whose ids Ray Data had committed to the checkpoint
  rows_kept              rows the rerun reported as already done (not recomputed)
  kept_fraction          rows_kept / rows_in_files_at_kill
  exactly_once           every id once in the final output
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).parents[1]


def rows_in(paths) -> int:
    total = 0
    for path in paths:
        try:
            total += pq.read_metadata(path).num_rows
        except Exception:  # noqa: BLE001 - a file still being written is not finished work
            pass
    return total


def committed(output: Path) -> int:
    return rows_in(p for p in (output / ".corpusmill" / "checkpoint").glob("*.parquet")
                   if ".pending." not in p.name)


def run_cli(job: Path, kill_at_rows: int | None, output: Path) -> tuple[int, str, dict]:
    """Run `corpusmill run JOB` in its own process group and Ray temp dir; with
    `kill_at_rows`, SIGKILL the group once that many rows are committed."""
    ray_tmp = tempfile.mkdtemp(prefix="cmres")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    log = Path(ray_tmp) / "cli.log"
    proc = subprocess.Popen([sys.executable, "-m", "corpusmill.jobs.cli", "run", str(job)], cwd=REPO,
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    at_kill = {}
    while proc.poll() is None:
        if kill_at_rows is not None and output.exists() and committed(output) >= kill_at_rows:
            at_kill = {"rows_in_files_at_kill": rows_in(output.glob("*.parquet")),
                       "rows_committed_at_kill": committed(output)}
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    time.sleep(2)  # Ray's services die with their driver; leave them a moment
    subprocess.run(["pkill", "-9", "-f", ray_tmp])
    return proc.returncode, log.read_text(), at_kill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="Parquet file or folder with `id`, `text`")
    parser.add_argument("--model", required=True, help="a sequence-classification model folder")
    parser.add_argument("--work", default=None, help="output folder (default: a temp dir)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-resume"))
    output = work / "out"
    job = work / "job.yaml"
    job.write_text(yaml.safe_dump({
        "task": "text-classification", "model": str(Path(args.model).resolve()),
        "input": str(Path(args.corpus).resolve()), "output": str(output), "id_column": "id",
        "columns": {"text": "text"}, "output_mode": "overwrite"}))
    total = pq.read_table(args.corpus, columns=["id"]).num_rows

    code, _, at_kill = run_cli(job, kill_at_rows=total // 2, output=output)
    if not at_kill:
        sys.exit(f"the run ended (exit {code}) before half the rows were committed")
    job.write_text(job.read_text().replace("output_mode: overwrite", "output_mode: resume"))
    code, log, _ = run_cli(job, kill_at_rows=None, output=output)
    if code != 0:
        sys.exit(f"the resumed run failed (exit {code}):\n{log[-3000:]}")
    kept = re.search(r"resumed: (\d+) rows were already done", log)
    ids = pq.read_table(output, columns=["id"]).column("id").to_pylist()
    figures = {"rows_total": total, **at_kill, "rows_kept": int(kept.group(1)) if kept else 0,
               "exactly_once": len(ids) == len(set(ids)) == total}
    figures["kept_fraction"] = round(figures["rows_kept"] / figures["rows_in_files_at_kill"], 4)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
