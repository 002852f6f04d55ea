"""The `corpusmill` command: run | validate | evaluate | report | train | tasks | submit |
status | logs | stop | kube.

Exit status of `run` (and of `submit --wait`): 0 success; 1 the job failed while running;
2 the job spec, input, model or output is wrong (nothing was run); 3 the job completed, but
some rows have errors or were left out (on_error) or corrupt files were skipped; 4 an
incremental run found no new input file and did nothing; 130 / 143 stopped by Ctrl-C /
SIGTERM (rerun to resume). Expected failures print one line; `--debug` (or CORPUSMILL_DEBUG=1)
adds the traceback."""
from __future__ import annotations

import argparse
import os
import sys
import time

from corpusmill.errors import JobError, RowError
from corpusmill.jobs.failures import (
    Interrupted, StopSignals, debug_enabled, describe, print_traceback, user_error,
)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_PARTIAL, EXIT_NOTHING_NEW = 0, 1, 2, 3, 4


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The `corpusmill` argument parser (the docs site renders its help: docs_reference.py)."""
    parser = argparse.ArgumentParser(prog="corpusmill", description="Batch NLP over Parquet "
                                     "corpora on Ray Data.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print full tracebacks of "
                        "failures (for bug reports; also CORPUSMILL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run a job"), ("validate", "check a job without running it: "
                       "spec, input schema, and that the model loads and fits the task"),
                       ("submit", "submit a job to a Ray cluster through the Ray Jobs API"),
                       ("evaluate", "score a job's output against its gold column (the spec's "
                        "evaluate block, or --set evaluate.gold=COLUMN); with --sample N, "
                        "run and score a sample first and estimate the full run's time")):
        cmd = sub.add_parser(name, help=text, description=text, parents=[common])
        cmd.add_argument("job", help="job spec (YAML)")
        cmd.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a spec key, e.g. options.top_k=3 "
                         "(repeatable; values parse as YAML)")
        if name in ("run", "submit"):
            cmd.add_argument("--incremental", action="store_true", help="process only input "
                             "files no earlier run of this job finished (spec key incremental)")
        if name == "run":
            cmd.add_argument("--address", default=None, help="Ray cluster to run on, e.g. "
                             "HEAD:6379 (default: $RAY_ADDRESS; unset: a local Ray; `local` "
                             "forces one)")
            cmd.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                             help="how long a cluster address may take to answer (default 30, "
                             "or $CORPUSMILL_CONNECT_TIMEOUT_S)")
            cmd.add_argument("--verbose", action="store_true", help="show Ray's own logs, "
                             "warnings and progress on the terminal (by default they go to "
                             "<output>/.corpusmill/logs/<run>.log)")
            cmd.add_argument("--exit-zero-if-complete", action="store_true", help="exit 0 "
                             "also when the job completed with row errors or skipped files (3) "
                             "or found nothing new (4), for runners that retry every non-zero "
                             "exit (a KubeRay RayJob); the summary still says what happened")
        if name == "evaluate":
            cmd.add_argument("--sample", type=int, default=None, metavar="N", help="run the "
                             "model on a seeded, length-stratified sample of N rows (with gold) "
                             "in this process, print its metrics and an estimate of the full "
                             "run's time; writes nothing to the output")
            cmd.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
        if name == "submit":
            _address_argument(cmd)
            cmd.add_argument("--wait", action="store_true", help="follow the job until it "
                             "ends; exit with the job's own status (see `run`)")
    text = ("fine-tune a base model for a task on a labelled corpus; the output folder is a "
            "model `corpusmill run` takes (the same command again resumes)")
    cmd = sub.add_parser("train", help=text, description=text, parents=[common])
    cmd.add_argument("spec", help="train spec (YAML)")
    cmd.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override a spec key, e.g. training.epochs=5 "
                     "(repeatable; values parse as YAML)")
    _kube_parser(sub, common)
    text = "list the tasks, their inputs, options and output columns"
    sub.add_parser("tasks", help=text, description=text, parents=[common])
    cmd = sub.add_parser("report", help="rebuild a job's run report from its output folder",
                         parents=[common],
                         description="rebuild <output>/.corpusmill/report/ (report.json, report.html and, "
                                     "for a job with an evaluate block, metrics.json) from the "
                                     "output folder alone")
    cmd.add_argument("output", help="the job's output folder")
    for name, text in (("status", "show a submitted job's status"),
                       ("logs", "print a submitted job's logs"),
                       ("stop", "stop a submitted job")):
        cmd = sub.add_parser(name, help=text, description=text, parents=[common])
        cmd.add_argument("submission_id", help="the id `corpusmill submit` printed")
        _address_argument(cmd)
    return parser


def _kube_parser(sub, common) -> None:
    text = ("render Kubernetes manifests (KubeRay: a ConfigMap with the resolved spec and a "
            "RayJob, or with --schedule a RayCronJob) for a job, checked against the KubeRay "
            "v1.7.0 CRDs; or, with --check FILE, check manifests")
    cmd = sub.add_parser("kube", help=text, description=text, parents=[common])
    cmd.add_argument("job", nargs="?", help="job spec (YAML); its optional kube: block sets "
                     "image, namespace, Secret, worker groups and volumes")
    cmd.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override a spec key, e.g. "
                     "input=s3://bucket/in/ or kube.gpu_workers.gpu_type=NVIDIA-L4 "
                     "(repeatable; values parse as YAML)")
    cmd.add_argument("--check", metavar="FILE", help="check FILE's manifests against the "
                     "KubeRay v1.7.0 CRDs (unknown fields refused) instead of rendering")
    cmd.add_argument("--schedule", metavar="CRON", help="a RayCronJob on this schedule, e.g. "
                     "'0 * * * *'; each run processes only new input files (KubeRay >= 1.6 "
                     "with the RayCronJob feature gate)")
    cmd.add_argument("--name", help="name of the RayJob / RayCronJob (default: TASK-JOBID)")
    cmd.add_argument("--image", help="container image with corpusmill installed (kube.image)")
    cmd.add_argument("--pip", action="append", default=[], metavar="REQUIREMENT",
                     help="a pip requirement the job's runtime environment installs on every "
                     "node, e.g. a corpusmill wheel URL (kube.pip; repeatable)")
    cmd.add_argument("--namespace", help="namespace (kube.namespace)")
    cmd.add_argument("--secret", help="Secret whose keys become the pods' environment, e.g. "
                     "AWS_ACCESS_KEY_ID (kube.secret); its values are never rendered")
    cmd.add_argument("--volume", dest="volumes", action="append", default=[],
                     metavar="CLAIM:/MOUNT/PATH", help="mount a PersistentVolumeClaim in every "
                     "pod; job paths under it are accepted (kube.volumes; repeatable)")
    cmd.add_argument("--active-deadline", type=int, metavar="SECONDS",
                     help="stop a run that takes longer (kube.active_deadline_seconds)")
    cmd.add_argument("-o", "--output", metavar="FILE", help="write the manifests to FILE "
                     "(default: standard output)")


def _address_argument(cmd) -> None:
    cmd.add_argument("--address", default=None, help="Ray dashboard address, e.g. "
                     "http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS)")


def main(argv=None) -> int:
    started_at = time.time()
    args = parse_args(argv)
    if argv is None:  # the `corpusmill` command: timed from its process's start, imports too
        started_at = process_started()
    args.started_at = started_at
    debug = debug_enabled(args.debug)
    try:
        with StopSignals():
            return _dispatch(args, debug)
    except JobError as e:
        print(f"corpusmill: error: {e}", file=sys.stderr)
        if debug:
            print_traceback(e)
        return EXIT_INVALID
    except Interrupted as e:
        print(f"corpusmill: stopped ({e.signal_name})", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `corpusmill tasks | head`: the reader went away; say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a closed pipe


def process_started() -> float:
    """When this process began (epoch seconds): a command's run is timed from it, imports
    included. Here, not in jobs/run.py: `validate` and the other commands that start no run
    do not import the runner (and Ray Data with it)."""
    import psutil

    return psutil.Process().create_time()


def _dispatch(args, debug: bool) -> int:
    if args.command == "tasks":
        print_tasks()
        return EXIT_OK
    if args.command in ("status", "logs", "stop"):
        return follow(args.command, args.submission_id, args.address)
    if args.command == "report":
        return report(args.output)
    if args.command == "train":
        return train(args.spec, args.overrides, debug)
    if args.command == "kube":
        return kube(args)
    from corpusmill.spec import load_spec

    overrides = list(args.overrides)
    if getattr(args, "incremental", False):
        overrides.append("incremental=true")
    spec = load_spec(args.job, overrides)
    if args.command == "validate":
        return validate(spec)
    if args.command == "submit":
        return submit(spec, args.address, args.wait)
    if args.command == "evaluate":
        from corpusmill.jobs.reporting.evaluate import evaluate_command

        return evaluate_command(spec, args.sample, args.seed)
    code = run(spec, args.address, args.verbose, args.connect_timeout, debug,
               started_at=args.started_at)
    if args.exit_zero_if_complete and code in (EXIT_PARTIAL, EXIT_NOTHING_NEW):
        return EXIT_OK
    return code


def validate(spec) -> int:
    """`corpusmill validate`: the run's preflight with the weights loaded once, and where a
    fresh run would go (`choose_executor`: `executor: process` with a cluster named is
    refused here as `run` refuses it)."""
    from corpusmill.jobs.in_process import PROCESS, choose_executor
    from corpusmill.jobs.preflight import preflight, preflight_several

    if spec.several:
        plan, corpus = preflight_several(spec, load_weights=True)
    else:
        plan, corpus = preflight(spec, load_weights=True)
    executor = choose_executor(spec, None, rows=corpus.num_rows, rows_before=0)
    print(f"ok: {spec.describe()} over {corpus.num_rows} rows in {len(corpus.files)} file(s)")
    print(f"runs in this process, no Ray ({executor.reason}); a run that resumes earlier "
          f"work runs on Ray" if executor.kind == PROCESS else f"runs on Ray ({executor.reason})")
    if spec.several:
        shared = [group for group in plan.share_groups() if len(group) > 1]
        print("tokenization: " + ("; ".join(f"shared by {', '.join(g)}" for g in shared)
                                  if shared else "one per task (no two tasks tokenize alike)"))
    print(f"output columns: {', '.join(f'{f.name} ({f.type})' for f in plan.output_schema)}")
    return EXIT_OK


def run(spec, address: str | None = None, verbose: bool = False,
        connect_timeout: float | None = None, debug: bool = False,
        started_at: float | None = None) -> int:
    from corpusmill.jobs.cluster.ray_session import ClusterUnreachable
    from corpusmill.jobs.run import run_job

    try:
        summary = run_job(spec, address=address, verbose=verbose,
                          connect_timeout_s=connect_timeout, started_at=started_at)
    except JobError as e:  # from a Ray task too (a damaged row group): its message alone
        raise (user_error(e) or e) from None
    except Interrupted as e:
        print(f"corpusmill: {e.signal_name}: the run stopped; {resume_hint(spec)}",
              file=sys.stderr)
        return e.exit_code
    except ClusterUnreachable as e:
        print(f"corpusmill: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - one line: our error behind Ray's wrapper, or the cause
        if debug:
            print_traceback(e)
        found = user_error(e)
        if isinstance(found, JobError):
            print(f"corpusmill: error: {found}", file=sys.stderr)
            return EXIT_INVALID
        if isinstance(found, RowError):
            print(f"corpusmill: job stopped: {found}; {resume_hint(spec)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"corpusmill: job failed: {describe(e)}" + ("" if debug else
              " (--debug shows the traceback)"), file=sys.stderr)
        return EXIT_FAILED
    for line in summary.lines():
        print(line)
    if summary.nothing_new:
        return EXIT_NOTHING_NEW
    return EXIT_PARTIAL if summary.partial else EXIT_OK


def train(path: str, overrides: list[str], debug: bool = False) -> int:
    """`corpusmill train`: 0 when the model folder is complete (also when an earlier run had
    finished it), 2 for a spec, input, label or base model error, 1 when training failed,
    130 / 143 when stopped (the same command resumes from the last checkpoint)."""
    from corpusmill.jobs.training.train import run_training
    from corpusmill.jobs.training.train_spec import load_train_spec

    spec = load_train_spec(path, overrides)
    try:
        summary = run_training(spec)
    except JobError as e:
        raise (user_error(e) or e) from None
    except Interrupted as e:
        print(f"corpusmill: {e.signal_name}: training stopped; run the same command again to "
              f"resume from its last checkpoint", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - one line: our error behind Ray's wrapper, or the cause
        if debug:
            print_traceback(e)
        found = user_error(e)
        if isinstance(found, JobError):
            raise found from None
        print(f"corpusmill: training failed: {describe(e)}" + ("" if debug else
              " (--debug shows the traceback)"), file=sys.stderr)
        return EXIT_FAILED
    for line in summary.lines():
        print(line)
    return EXIT_OK


def report(output: str) -> int:
    from corpusmill.jobs.reporting.report import write_report

    written = write_report(output)
    print(f"report: {written['report.html']}")
    return EXIT_OK


def submit(spec, address: str | None, wait: bool) -> int:
    from corpusmill.jobs.cluster import submit as jobs_api

    submission_id = jobs_api.submit(spec, address)
    print(f"submitted {submission_id} (job {spec.job_id}: {spec.describe()})")
    if not wait:
        print(f"follow it with: corpusmill status {submission_id}; corpusmill logs "
              f"{submission_id}")
        return EXIT_OK
    status = jobs_api.wait(address, submission_id)
    jobs = jobs_api.client(address)
    print(jobs.get_job_logs(submission_id), end="")
    print(f"{submission_id}: {status}")
    if status == "SUCCEEDED":
        return EXIT_OK
    # the driver's own exit status tells partial (3) and nothing new (4) from failure
    code = jobs.get_job_info(submission_id).driver_exit_code
    return code if code in (EXIT_INVALID, EXIT_PARTIAL, EXIT_NOTHING_NEW) else EXIT_FAILED


def kube(args) -> int:
    """`corpusmill kube`: render (checked) manifests, or --check a file of them."""
    from pathlib import Path

    from corpusmill.jobs.cluster import kube as kuberay
    from corpusmill.jobs.cluster.kube_check import KUBERAY_VERSION, check_text
    from corpusmill.spec import load_spec

    if args.check:
        if args.job:
            raise JobError("kube: give a job spec to render or --check FILE, not both")
        path = Path(args.check)
        if not path.is_file():
            raise JobError(f"kube --check: {args.check!r} does not exist")
        documents = check_text(path.read_text(encoding="utf-8"), args.check)
        kinds = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in documents)
        print(f"ok: {kinds} match the KubeRay {KUBERAY_VERSION} CRDs")
        return EXIT_OK
    if not args.job:
        raise JobError("kube: give a job spec (corpusmill kube JOB.yaml) or --check FILE")
    spec = load_spec(args.job, args.overrides)
    settings = kuberay.settings_for(
        spec, image=args.image, pip=args.pip, namespace=args.namespace, secret=args.secret,
        volumes=args.volumes, active_deadline_seconds=args.active_deadline)
    text = kuberay.manifests(spec, settings, name=args.name, schedule=args.schedule)
    if not args.output:
        print(text, end="")
        return EXIT_OK
    Path(args.output).write_text(text, encoding="utf-8")
    kind = "RayCronJob" if args.schedule else "RayJob"
    print(f"wrote {args.output}: a ConfigMap with the job spec and a {kind} (checked against "
          f"the KubeRay {KUBERAY_VERSION} CRDs); apply with kubectl apply -f "
          f"{args.output}")
    return EXIT_OK


def follow(command: str, submission_id: str, address: str | None) -> int:
    from corpusmill.jobs.cluster import submit as jobs_api

    jobs = jobs_api.client(address)
    try:
        if command == "status":
            info = jobs.get_job_info(submission_id)
            print(f"{submission_id}: {info.status.value}" + (f" ({info.message})"
                                                             if info.message else ""))
        elif command == "logs":
            print(jobs.get_job_logs(submission_id), end="")
        else:
            stopped = jobs.stop_job(submission_id)
            print(f"{submission_id}: {'stop requested' if stopped else 'already finished'}")
    except RuntimeError as e:  # the Jobs API's answer for unknown ids
        raise JobError(f"{command} {submission_id}: {e}") from None
    return EXIT_OK


def resume_hint(spec) -> str:
    """What an interrupted run leaves: committed rows are kept, a rerun resumes."""
    from corpusmill.jobs.stores.output import committed_rows

    try:
        rows = committed_rows(spec.output)
    except Exception:  # noqa: BLE001 - the message matters more than the count
        return "run the same command again to resume"
    return (f"{rows:,} row(s) of this job are committed in {spec.output}; run the same "
            f"command again to resume (committed rows are not recomputed)")


def print_tasks() -> None:
    from corpusmill.pipelines.registry import all_tasks

    for task in all_tasks():
        print(f"{task.name}: {task.summary}")
        print(f"  inputs: {', '.join(task.input_columns)}")
        for name, field in task.Options.model_fields.items():
            default = ("required" if field.is_required()
                       else f"default {field.get_default(call_default_factory=True)!r}")
            print(f"  option {name} ({default}): {field.description}")
        fields = task.output_fields()
        print(f"  outputs: {', '.join(f'{f.name} ({f.type})' for f in fields)}")


if __name__ == "__main__":
    sys.exit(main())
