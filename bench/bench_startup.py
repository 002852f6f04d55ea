"""The demo's wall time and the process tree's peak memory, this tree against git ref
`--before`, interleaved (before, after, before, after, ...), medians of `--reps` runs, the
machine's load average beside every run. Each run is a fresh `corpusmill run` process with
`output_mode: overwrite` (the onnxruntime graph is exported beforehand, untimed: it is built
once per model and cached).

    python bench/bench_startup.py --before bad747b --reps 3 --json bench/results-startup.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_classification import REPO, run_measured, tree_env  # noqa: E402

DEMO = "jobs/examples/topics_minilm.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git ref to compare with")
    parser.add_argument("--job", default=DEMO)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cm-startup-"))
    envs = {"before": tree_env(args.before, work / "before"), "after": None}
    cmd = lambda side: [sys.executable, "-m", "corpusmill.jobs.cli", "run", args.job,  # noqa
                        f"--set=output={work / ('out-' + side)}", "--set=output_mode=overwrite"]
    run_measured(cmd("after"))  # untimed: builds the graph the defaults use, if not cached
    runs: dict[str, list] = {"before": [], "after": []}
    for rep in range(args.reps):
        for side in ("before", "after"):
            load = os.getloadavg()[0]
            wall, rss, rc, out = run_measured(cmd(side), env=envs[side])
            if rc != 0:
                raise SystemExit(f"{side} failed (exit {rc}):\n{out[-2000:]}")
            runs[side].append({"wall_s": wall, "peak_rss_mib": rss / 2**20, "load_1min": load})
            print(f"rep {rep + 1} {side:6s} wall {wall:6.1f} s  peak RSS {rss / 2**20:6.0f} MiB"
                  f"  load {load:.1f}", flush=True)
    report = {"job": args.job, "before": args.before, "reps": args.reps, "runs": runs}
    for side, done in runs.items():
        report[side] = {"wall_s": statistics.median(r["wall_s"] for r in done),
                        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in done)}
    report["wall after / before"] = report["after"]["wall_s"] / report["before"]["wall_s"]
    report["peak RSS after / before"] = (report["after"]["peak_rss_mib"]
                                         / report["before"]["peak_rss_mib"])
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.chdir(REPO)
    main()
