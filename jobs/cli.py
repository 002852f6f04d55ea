"""The `corpusmill` command: run | validate | tasks.

Exit status: 0 success, 1 the job failed while running, 2 the job spec, input, model or
output is wrong (nothing was run)."""
from __future__ import annotations

import argparse
import sys

from jobs.errors import JobError, RowError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corpusmill", description="Batch NLP over Parquet "
                                     "corpora on Ray Data.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run a job"), ("validate", "check a job without running it: "
                       "spec, input schema, and that the model loads and fits the task")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("job", help="job spec (YAML)")
        cmd.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a spec key, e.g. options.top_k=3 "
                         "(repeatable; values parse as YAML)")
    sub.add_parser("tasks", help="list the tasks, their inputs, options and output columns")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "tasks":
            print_tasks()
            return EXIT_OK
        from jobs.spec import load_spec

        spec = load_spec(args.job, args.overrides)
        if args.command == "validate":
            return validate(spec)
        return run(spec)
    except JobError as e:
        print(f"corpusmill: error: {e}", file=sys.stderr)
        return EXIT_INVALID


def validate(spec) -> int:
    from jobs.preflight import preflight

    plan, corpus = preflight(spec, load_weights=True)
    print(f"ok: {spec.task} with {spec.model} over {corpus.num_rows} rows in "
          f"{len(corpus.files)} file(s)")
    print(f"output columns: {', '.join(f'{f.name} ({f.type})' for f in plan.output_schema)}")
    return EXIT_OK


def run(spec) -> int:
    from jobs.run import run_job

    try:
        summary = run_job(spec)
    except JobError:
        raise
    except Exception as e:  # noqa: BLE001 - show the cause, not Ray's wrapper, then fail
        cause = _root_cause(e)
        print(f"corpusmill: job failed: {type(cause).__name__}: {cause}", file=sys.stderr)
        return EXIT_FAILED
    for line in summary.lines():
        print(line)
    return EXIT_OK


def _root_cause(error: BaseException) -> BaseException:
    """Ray wraps task errors (RayTaskError, UserCodeException); surface the user-facing one."""
    seen = error
    while seen is not None:
        if isinstance(seen, (JobError, RowError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def print_tasks() -> None:
    from pipelines.registry import all_tasks

    for task in all_tasks():
        print(f"{task.name}: {task.summary}")
        print(f"  inputs: {', '.join(task.input_columns)}")
        for name, field in task.Options.model_fields.items():
            default = "required" if field.is_required() else f"default {field.get_default()!r}"
            print(f"  option {name} ({default}): {field.description}")
        fields = task.output_fields()
        print(f"  outputs: {', '.join(f'{f.name} ({f.type})' for f in fields)}")


if __name__ == "__main__":
    sys.exit(main())
