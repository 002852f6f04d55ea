"""Quality against a gold column: the job spec's `evaluate` block checked before any Ray work,
and a table of output rows scored by the task's own metric (`Task.evaluate`, which computes it
with the field's standard library).

Rows whose gold value is null (or an empty list) are left out and counted; so are rows with an
error (they have no output to score). `corpusmill evaluate` (jobs/cli.py) scores a finished
job's output, or with `--sample N` a sample run before the full corpus (jobs/sample.py).

A job with several tasks (`tasks:`) scores each task whose block has `evaluate` against its
gold column: over the task's `<name>_` output columns, rows that task failed on left out
(`score_table(..., name)`), its result and lines labelled with its name."""
from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from corpusmill.errors import JobError
from corpusmill.operators.plan import ERROR
from corpusmill.pipelines.base import GoldRows, Task
from corpusmill.spec import JobSpec


def check_gold(spec: JobSpec, task: Task, corpus_columns: list[str], schema: pa.Schema,
               kept: list[str], input_columns: dict[str, str]) -> None:
    """Refuse an `evaluate` block the output could not be scored with: the gold column (and any
    input the metric reads, such as NER's text) must be kept in the output, and of a type the
    task scores. `corpus_columns`: the input's columns; `schema`: the read schema (the kept
    columns' unified types)."""
    evaluate = spec.evaluate_options
    if evaluate is None:
        return
    gold = evaluate.gold
    if gold not in corpus_columns:
        raise JobError(f"evaluate.gold {gold!r} is not a column of the input; columns: "
                       f"{', '.join(corpus_columns)}")
    if gold not in kept:
        raise JobError(f"evaluate.gold {gold!r} must be kept in the output to be scored: add it "
                       f"to keep_columns (or leave keep_columns out to keep every column)")
    for name in task.evaluate_inputs:
        column = input_columns[name]
        if column not in kept:
            raise JobError(f"evaluate: {task.name} reads the input {name!r} (column "
                           f"{column!r}) to score its outputs; add {column!r} to keep_columns")
    try:
        task.check_gold(schema.field(gold).type, evaluate, spec.task_options)
    except ValueError as e:
        raise JobError(f"evaluate.gold {gold!r}: {e}") from None


def gold_columns(spec: JobSpec, task: Task) -> list[str]:
    """The output columns scoring reads besides the task's outputs and `error`."""
    columns = [spec.evaluate_options.gold]
    mapping = {name: spec.columns.get(name, name) for name in task.input_columns}
    return columns + [mapping[name] for name in task.evaluate_inputs]


def output_columns(task: Task, name: str = "") -> dict[str, str]:
    """The task's output columns and `error`, as its single-task job names them -> as the
    output holds them: the same, or for task `name` of a job with several (`tasks:`)
    prefixed `<name>_` (its own error in `<name>_error`; the joined `error` is every task's)."""
    names = [f.name for f in task.output_fields()] + [ERROR]
    return {column: f"{name}_{column}" if name else column for column in names}


def score_table(spec: JobSpec, task: Task, table: pa.Table, id_column: str,
                name: str = "") -> dict:
    """Metrics of the output rows in `table` (task outputs, `error`, the id, gold and the
    inputs `gold_columns` names) against the gold column, with the rows left out counted.
    `name`: task `name` of a job with several, `spec` its single-task spec: its prefixed
    columns are scored (`output_columns`), rows it failed on left out, and the result is
    labelled with the name."""
    evaluate = spec.evaluate_options
    columns = output_columns(task, name)
    gold = table.column(evaluate.gold)
    has_gold = pc.is_valid(gold)
    if pa.types.is_list(gold.type) or pa.types.is_large_list(gold.type):
        has_gold = pc.and_(has_gold, pc.greater(pc.fill_null(pc.list_value_length(gold), 0), 0))
    ok = pc.is_null(table.column(columns[ERROR]))
    scored = table.filter(pc.and_(has_gold, ok))
    inputs = {key: spec.columns.get(key, key) for key in task.input_columns}
    rows = GoldRows(
        outputs=_Columns(scored, {f.name: columns[f.name] for f in task.output_fields()}),
        gold=scored.column(evaluate.gold).to_pylist(),
        texts={key: scored.column(inputs[key]).to_pylist() for key in task.evaluate_inputs},
        ids=scored.column(id_column).to_pylist() if id_column in scored.column_names else [])
    counts = {"rows": table.num_rows, "scored": scored.num_rows,
              "gold_missing": _count_false(has_gold),
              "errored": _count_false(pc.or_(pc.invert(has_gold), ok))}
    metrics = task.evaluate(rows, evaluate, spec.task_options) if len(rows) else {}
    labelled = {"name": name} if name else {}
    return {**labelled, "task": task.name, "gold": evaluate.gold,
            "options": evaluate.model_dump(mode="json"), "rows": counts, "metrics": metrics}


class _Columns(Mapping):
    """Output columns as Python lists, each converted when a metric first reads it (a task
    reads one or two of its columns; converting the others would cost time on large outputs).
    `names`: the task's name of each column -> the table's."""

    def __init__(self, table: pa.Table, names: dict[str, str]):
        self._table, self._names, self._lists = table, names, {}

    def __getitem__(self, name: str) -> list:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._lists:
            self._lists[name] = self._table.column(self._names[name]).to_pylist()
        return self._lists[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _count_false(mask) -> int:
    return int(pc.sum(pc.invert(mask).cast(pa.int64())).as_py() or 0)


def headline(result: dict) -> list[str]:
    """The metrics as a few printable lines: the scalars first, then what was left out."""
    rows = result["rows"]
    scalars = {k: v for k, v in result["metrics"].items() if isinstance(v, float)}
    shown = "  ".join(f"{k} {_number(v)}" for k, v in scalars.items())
    what = f"{result['name']} ({result['task']})" if result.get("name") else result["task"]
    lines = [f"{what} against {result['gold']!r}: {shown or 'no row to score'}",
             f"{scored_rows(result)} row(s) scored"
             + (f"; {rows['gold_missing']} without gold left out" if rows["gold_missing"] else "")
             + (f"; {rows['errored']} with errors left out" if rows["errored"] else "")
             + "".join(f"; {result['metrics'][key]} {what}" for key, what in _NOTES.items()
                       if result["metrics"].get(key))]
    return lines


_NOTES = {"rows_gold_mismatched": "whose gold does not fit the row, left out",
          "gold_not_a_candidate": "with a gold label that is not a candidate label"}


def scored_rows(result: dict) -> int:
    """Rows the metric counts: with gold and no error, less those whose gold does not fit."""
    return result["rows"]["scored"] - (result["metrics"].get("rows_gold_mismatched") or 0)


def detail_lines(result: dict) -> list[str]:
    """Per-class (or per entity type) precision, recall and F1, worst F1 first."""
    metrics = result["metrics"]
    per = metrics.get("per_class") or metrics.get("per_type") or {}
    if not per:
        return []
    width = max(len(k) for k in per)
    return [f"  {k:<{width}}  precision {v['precision']:.2f}  recall {v['recall']:.2f}  "
            f"F1 {v['f1']:.2f}  (gold {v['support']})"
            for k, v in sorted(per.items(), key=lambda kv: kv[1]["f1"])]


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluate_command(spec: JobSpec, sample: int | None, seed: int) -> int:
    """`corpusmill evaluate`: score the finished output of this job, or with `sample` run and
    score a sample first. Prints the metrics; scoring the output also writes them to
    `.corpusmill/report/metrics.json` and into the report. A job with several tasks: each
    task with an `evaluate` block in its own block, labelled with its name."""
    from corpusmill.jobs.preflight import preflight, preflight_several

    scored = {name: one for name, one in spec.task_specs().items()
              if one.evaluate_options is not None}
    if not scored and spec.several:
        raise JobError("no task of the job has an evaluate block: add `evaluate: {gold: "
                       "<column>}` to a task's block, or pass --set "
                       "tasks.NAME.evaluate.gold=<column>")
    if not scored:
        raise JobError("the job has no evaluate block: add `evaluate: {gold: <column>}` to the "
                       "job spec, or pass --set evaluate.gold=<column>")
    plan, corpus = preflight_several(spec) if spec.several else preflight(spec)
    if sample is not None:
        return _evaluate_sample(plan, corpus, sample, seed, scored)
    return _evaluate_output(plan, scored)


def _evaluate_sample(plan, corpus, n: int, seed: int, scored: dict[str, JobSpec]) -> int:
    """Each task with an evaluate block (`scored`: name -> its spec; '' a single-task job's)
    run on a sample of the rows with its gold, in this process, and scored."""
    from transformers.utils import logging as transformers_logging

    from corpusmill.jobs.sample import run_sample

    transformers_logging.disable_progress_bar()

    if n < 1:
        raise JobError(f"--sample must be at least 1, got {n}")
    plans = plan.tasks if plan.spec.several else {"": plan}
    for name, spec in scored.items():
        one = plans[name]
        run = run_sample(one, corpus, n, seed, gold=spec.evaluate_options.gold)
        result = score_table(spec, one.task, run.table, one.id_column)
        if not run.rows:
            raise JobError(f"no row of the input has a gold value in column "
                           f"{spec.evaluate_options.gold!r} to sample"
                           + (f" (task {name!r})" if name else ""))
        if name:  # the sample's columns are the task's own, unprefixed
            result = {"name": name, **result}
        print((f"{name}: " if name else "")
              + f"sample of {run.rows} rows with gold (of {run.corpus_rows:,}), seed {seed}")
        for line in headline(result) + detail_lines(result) + run.estimate_lines(corpus.num_rows):
            print(line)
    return 0


def _evaluate_output(plan, scored: dict[str, JobSpec]) -> int:
    """Score the job's finished output: each task with an evaluate block (`scored`), a job
    with several's over its `<name>_` columns; the metrics go into the report."""
    from corpusmill.jobs.reporting.report import write_report
    from corpusmill.jobs.stores.output import read_manifest

    spec = plan.spec
    manifest = read_manifest(spec.output)
    if manifest is None or manifest.get("job_id") != spec.job_id:
        raise JobError(f"output {spec.output!r} holds no output of this job yet: run it first "
                       f"(corpusmill run), or evaluate a sample with --sample N")
    if manifest.get("status") != "complete":
        raise JobError(f"the last run of this job in {spec.output!r} did not complete (status "
                       f"{manifest.get('status')!r}): rerun it to finish, then evaluate")
    from corpusmill.jobs.reporting.report import scan_output

    if spec.several:
        tasks = {name: (plan.tasks[name].task, gold_columns(one, plan.tasks[name].task))
                 for name, one in scored.items()}
        scan = scan_output(spec.output, None, plan.id_column, set(), [], tasks=tasks)
        results = [score_table(one, tasks[name][0], scan.tasks[name].gold_table(),
                               plan.id_column, name) for name, one in scored.items()]
        metrics = {"tasks": {result["name"]: result for result in results}}
    else:
        scan = scan_output(spec.output, plan.task, plan.id_column, set(),
                           gold_columns(spec, plan.task))
        results = [score_table(spec, plan.task, scan.gold_table(), plan.id_column)]
        metrics = results[0]
    written = write_report(spec.output, manifest, metrics=metrics)
    for result in results:
        for line in headline(result) + detail_lines(result):
            print(line)
    print(f"metrics: {written['metrics.json']}; report: {written['report.html']}")
    return 0
