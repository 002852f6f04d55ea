"""The run report: what a job did and what it produced, rebuilt from the output folder alone.

`write_report(output)` reads the manifest (`.corpusmill/manifest.json`: summary, placement, run
statistics; a manifest without placement or statistics, from an older corpusmill or a run that
died, gives a report that says "not recorded") and the output files, and writes
`<output>/.corpusmill/report/report.json`, `report.html` (self-contained, plots embedded; jobs/
report_html.py) and, when the job has an `evaluate` block, `metrics.json`.

What the report holds: row counts; wall time, busy time per stage and throughput over time;
tokens and padding efficiency; rows per actor and per node; the resolved placement; the task's
output distributions (`Task.report_facts` / `report_panels`); errors grouped by kind with
example ids; for an incremental run, how the rows it added differ from the earlier ones; and
the metrics against gold. Aggregation is pandas over per-row facts read file by file (only the
columns needed).

A job with several tasks (`tasks:`; `build_several`): the same job-wide sections, a section per
task computed over its `<name>_` columns as its single-task report's would be (the column
names mapped by jobs/reporting/evaluate.py `output_columns`, so the same code reads them), the tasks'
inference times side by side, and whether they shared a tokenization."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusmill.errors import JobError
from corpusmill.operators.plan import ERROR
from corpusmill.operators.readers.files import GENERATED_ID
from corpusmill.jobs.stores.output import MANIFEST, REPORT_DIR, data_files, read_manifest
from corpusmill.pipelines.base import Panel, Task
from corpusmill.pipelines.registry import UnknownTask, get_task

REPORT_JSON, REPORT_HTML, METRICS_JSON = "report.json", "report.html", "metrics.json"
STAGES = ("read", "tokenize", "inference", "postprocess", "write")
TOP_VALUES = 20      # counts panels: the most frequent values shown, the rest summed as other
HISTOGRAM_BINS = 30
ERROR_EXAMPLES = 5


def write_report(output: str, manifest: dict | None = None,
                 metrics: dict | None = None) -> dict[str, str]:
    """Build the report of the job in `output` and write it to `<output>/.corpusmill/report/`; returns
    the paths written, by name. `manifest`: the run's manifest (default: read from the
    output). `metrics`: scores computed elsewhere (`corpusmill evaluate`); by default the
    job's own `evaluate` block, if it has one, is scored over the whole output."""
    manifest = manifest if manifest is not None else read_manifest(output)
    if manifest is None:
        raise JobError(f"{output!r} holds no corpusmill manifest ({MANIFEST}); is it a job's "
                       f"output folder?")
    return save_report(output, build_report(output, manifest, metrics))


def save_report(output: str, report: dict) -> dict[str, str]:
    """Write a built report's files to `<output>/.corpusmill/report/`; returns their paths, by name."""
    from corpusmill.jobs.reporting.report_html import render_html

    fs, root, _ = data_files(output)
    folder = f"{root}/{REPORT_DIR}"
    fs.create_dir(folder, recursive=True)
    written = {}
    files = {REPORT_JSON: json.dumps(report, indent=2, default=_json_default),
             REPORT_HTML: render_html(report)}
    if report["metrics"] is not None:
        files[METRICS_JSON] = json.dumps(report["metrics"], indent=2, default=_json_default)
    elif fs.get_file_info(f"{folder}/{METRICS_JSON}").is_file:
        fs.delete_file(f"{folder}/{METRICS_JSON}")  # an earlier build's: no longer the job's
    for name, text in files.items():
        with fs.open_output_stream(f"{folder}/{name}") as f:
            f.write(text.encode())
        written[name] = f"{folder}/{name}"
    from corpusmill.jobs.reporting.card import CARD, write_card  # the output's dataset card

    written[CARD] = write_card(fs, folder, output, report, read_manifest(output) or {})
    return written


def report_after_run(output: str, manifest: dict) -> tuple[str, ...]:
    """Write the report at the end of `corpusmill run` (jobs/run.py); returns the lines to print
    after the summary: the metrics against gold (a job with `evaluate`) and the report's path.
    The run itself has completed: a report that cannot be built is said, not raised."""
    from corpusmill.jobs.reporting.evaluate import headline

    try:
        report = build_report(output, manifest)
        written = save_report(output, report)
    except Exception as e:  # noqa: BLE001 - the output is complete whatever the report does
        return (f"the run report could not be written ({type(e).__name__}: {e}); rebuild it "
                f"with: corpusmill report {output}",)
    if report.get("tasks") is not None:
        lines = [line for result in ((report["metrics"] or {}).get("tasks") or {}).values()
                 for line in headline(result)] + tasks_lines(report)
    else:
        lines = headline(report["metrics"]) if report["metrics"] else []
    return tuple(lines + [f"report: {written[REPORT_HTML]}"])


def build_report(output: str, manifest: dict, metrics: dict | None = None) -> dict:
    """The report as plain data (what report.json holds). A job with several tasks:
    `build_several`."""
    spec_data = manifest.get("spec") or {}
    if spec_data.get("tasks"):
        return build_several(output, manifest, metrics)
    provenance = manifest.get("provenance") or {}
    task_name = spec_data.get("task") or provenance.get("task")
    try:
        task = get_task(task_name)
    except UnknownTask:
        task = None
    spec, spec_problem = _spec(spec_data)
    summary = manifest.get("summary") or {}
    stats = manifest.get("stats") or {}
    id_column = spec_data.get("id_column") or GENERATED_ID
    gold = []
    if metrics is None and spec is not None and spec.evaluate_options is not None and task:
        from corpusmill.jobs.reporting.evaluate import gold_columns

        gold = gold_columns(spec, task)
    scan = scan_output(output, task, id_column, set(stats.get("files_written") or []), gold)
    if gold:
        from corpusmill.jobs.reporting.evaluate import score_table

        metrics = score_table(spec, task, scan.gold_table(), id_column)
    panels = task.report_panels(spec.task_options if spec else None) if task else []
    return {
        "job": {"job_id": manifest.get("job_id"), "run_id": manifest.get("run_id"),
                "status": manifest.get("status"), "task": task_name,
                "model": spec_data.get("model") or provenance.get("model"),
                "input": spec_data.get("input"), "output": output,
                "created": provenance.get("created"),
                "corpusmill_version": provenance.get("corpusmill_version"),
                "options": provenance.get("options") or spec_data.get("options"),
                "spec_problem": spec_problem},
        **_run_sections(manifest, summary, stats, scan),
        "outputs": [summarize_panel(p, scan.facts, scan.rows_ok) for p in panels
                    if p.fact in scan.facts.columns],
        "errors": group_errors(scan.errors),
        "drift": drift(panels, scan, summary),
        "metrics": metrics,
    }


def build_several(output: str, manifest: dict, metrics: dict | None = None) -> dict:
    """The report of a job with several tasks (`tasks:`): the job-wide sections as a
    single-task job's (rows, time, tokens, actors, nodes; errors from the joined `error`),
    then `tasks`, a section per task, over its `<name>_` columns: what it ran (task, model,
    revision, options), its rows with and without its error, its inference time
    (`stats.stages["inference:<name>"]`), its placement, its output distributions and, in an
    incremental run, their change; and `tokenization`: how many times each row was tokenized
    for the tasks. `metrics`: {"tasks": {name: score_table's result}} for the tasks with an
    `evaluate` block (or as given: `corpusmill evaluate`). The top level's `outputs` is
    empty, its `drift` None: they are per task."""
    from corpusmill.jobs.reporting.evaluate import gold_columns, score_table

    spec_data = manifest.get("spec") or {}
    provenance = manifest.get("provenance") or {}
    made = provenance.get("tasks") or {}
    summary = manifest.get("summary") or {}
    stats = manifest.get("stats") or {}
    spec, spec_problem = _spec(spec_data)
    specs = spec.task_specs() if spec is not None and spec.several else {}
    id_column = spec_data.get("id_column") or GENERATED_ID
    tasks, gold = {}, {}
    for name, block in spec_data["tasks"].items():
        try:
            tasks[name] = get_task(block.get("task") or (made.get(name) or {}).get("task"))
        except UnknownTask:
            tasks[name] = None
        one = specs.get(name)
        if metrics is None and one is not None and one.evaluate_options is not None \
                and tasks[name] is not None:
            gold[name] = gold_columns(one, tasks[name])
    scan = scan_output(output, None, id_column, set(stats.get("files_written") or []), [],
                       tasks={name: (task, gold.get(name, [])) for name, task in tasks.items()})
    if gold:
        metrics = {"tasks": {name: score_table(specs[name], tasks[name],
                                               scan.tasks[name].gold_table(), id_column, name)
                             for name in gold}}
    placements = (manifest.get("placement") or {}).get("tasks") or {}
    sections = []
    for name, task in tasks.items():
        block, ours, one = spec_data["tasks"][name], scan.tasks[name], specs.get(name)
        panels = task.report_panels(one.task_options if one else None) if task else []
        recorded = made.get(name) or {}
        sections.append({
            "name": name, "task": block.get("task") or recorded.get("task"),
            "model": block.get("model") or recorded.get("model"),
            "revision": recorded.get("revision", block.get("revision")),
            "options": recorded.get("options") or block.get("options"),
            "prefix": f"{name}_",
            "rows": {"ok": ours.rows_ok, "errored": ours.rows - ours.rows_ok},
            "time": _task_time(stats, name),
            "placement": placements.get(name),
            "outputs": [summarize_panel(p, ours.facts, ours.rows_ok) for p in panels
                        if p.fact in ours.facts.columns],
            "drift": drift(panels, ours, summary),
        })
    return {
        "job": {"job_id": manifest.get("job_id"), "run_id": manifest.get("run_id"),
                "status": manifest.get("status"), "task": None, "model": None,
                "tasks": {s["name"]: s["task"] for s in sections},
                "input": spec_data.get("input"), "output": output,
                "created": provenance.get("created"),
                "corpusmill_version": provenance.get("corpusmill_version"),
                "options": None, "spec_problem": spec_problem},
        **_run_sections(manifest, summary, stats, scan),
        "outputs": [],
        "errors": group_errors(scan.errors),
        "drift": None,
        "metrics": metrics,
        "tasks": sections,
        "tokenization": _tokenization(stats, summary, len(sections)),
    }


def _run_sections(manifest: dict, summary: dict, stats: dict, scan) -> dict:
    """The report's sections about the run as a whole: rows, time, tokens, where it ran."""
    return {"rows": _rows(summary, scan), "time": _time(summary, stats),
            "tokens": _tokens(stats, summary), "placement": manifest.get("placement"),
            "actors": stats.get("actors"),
            "nodes": (manifest.get("placement") or {}).get("nodes")}


def _task_time(stats: dict, name: str) -> dict | None:
    """One task's inference: rows, busy seconds (summed over its actors), its share of all
    the tasks' inference time, rows per busy second."""
    stages = stats.get("stages") or {}
    stage = stages.get(f"inference:{name}")
    if not stage or "seconds" not in stage:
        return None
    seconds = float(stage.get("seconds") or 0)
    total = sum(float(values.get("seconds") or 0) for key, values in stages.items()
                if key.startswith("inference:"))
    rows = stage.get("rows")
    return {"rows": rows, "seconds": seconds, "share": seconds / total if total else 0.0,
            "rows_per_second": rows / seconds if rows and seconds else None}


def _tokenization(stats: dict, summary: dict, tasks: int) -> dict | None:
    """How many times this run tokenized each row for its `tasks`: the tokenize stage counts
    each tokenization's rows, so its rows over the rows this run processed. `shared`: `all`
    (once for every task), `some` (tasks that tokenize alike shared one), `none`."""
    tokenized = ((stats.get("stages") or {}).get("tokenize") or {}).get("rows")
    rows = (summary.get("rows_in") or 0) - (summary.get("rows_before") or 0)
    if tokenized is None or rows <= 0:
        return None
    times = tokenized / rows
    shared = ("all" if round(times, 2) <= 1 else "none" if round(times, 2) >= tasks
              else "some")
    return {"rows": rows, "rows_tokenized": tokenized, "tokenizations": round(times, 2),
            "tasks": tasks, "shared": shared}


def tasks_lines(report: dict) -> list[str]:
    """A job with several tasks: the tasks' inference time side by side, and whether they
    shared a tokenization, as one printable line (after the run, beside the metrics)."""
    parts = []
    for section in report.get("tasks") or []:
        time = section.get("time")
        parts.append(f"{section['name']} {_seconds(time['seconds'])} for {time['rows'] or 0:,} rows"
                     if time else f"{section['name']} not recorded")
    line = "inference busy time by task: " + ", ".join(parts)
    tokenization = report.get("tokenization")
    if tokenization:
        line += "; " + tokenization_text(tokenization)
    return [line]


def _seconds(value: float) -> str:
    return f"{value:,.1f} s" if value >= 10 else f"{value:.3g} s"


def tokenization_text(tokenization: dict) -> str:
    times, tasks = tokenization["tokenizations"], tokenization["tasks"]
    if tokenization["shared"] == "all":
        return f"tokenized once for the {tasks} tasks"
    if tokenization["shared"] == "none":
        return f"tokenized by each task ({times:g} tokenizations per row)"
    return f"tokenized {times:g} times per row for {tasks} tasks (shared where alike)"


def _spec(data: dict):
    """The JobSpec of the manifest, or (None, why not): an older spec may no longer validate."""
    from corpusmill.spec import parse_spec

    if not data:
        return None, "the manifest records no job spec"
    try:
        return parse_spec(data, source="the manifest's job spec"), None
    except JobError as e:
        return None, str(e)


# ---------------------------------------------------------------- reading the output

@dataclass
class Scan:
    rows: int = 0                         # output rows
    rows_ok: int = 0                      # of which without error
    rows_new: int = 0                     # in files this run wrote
    facts: pd.DataFrame = field(default_factory=pd.DataFrame)  # per ok row, plus `_new`
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "error"]))
    gold_tables: list[pa.Table] = field(default_factory=list)
    # a job with several tasks: each task's scan over its own columns (its rows without error
    # are those it succeeded on; its errors its own)
    tasks: dict[str, "Scan"] = field(default_factory=dict)

    def gold_table(self) -> pa.Table:
        if not self.gold_tables:
            raise JobError("no output file holds the gold column (and the inputs the metric "
                           "reads): was the job run with it kept?")
        return pa.concat_tables(self.gold_tables, promote_options="permissive")


@dataclass
class _View:
    """What one scan reads of each file: a task's output columns and error (its own name ->
    the file's: `output_columns`), the gold columns; its facts and errors, file by file."""
    scan: Scan
    task: Task | None
    columns: dict[str, str]
    gold: list[str]
    facts: list[pd.DataFrame] = field(default_factory=list)
    errors: list[pd.DataFrame] = field(default_factory=list)


def scan_output(output: str, task: Task | None, id_column: str, new_files: set[str],
                gold: list[str], tasks: dict[str, tuple[Task | None, list[str]]] | None = None
                ) -> Scan:
    """Read each data file once, only the columns needed: per-row facts of the rows without
    error, (id, message) of the rows with one, and, for scoring, the gold columns. `tasks`: a
    job with several (`task` None, `gold` empty): name -> (task, its gold columns), each
    scanned over its `<name>_` columns into `Scan.tasks`; the scan itself counts the joined
    `error`."""
    from corpusmill.jobs.reporting.evaluate import output_columns

    fs, root, paths = data_files(output)
    scan = Scan()
    views = [_View(scan, task, output_columns(task) if task else {ERROR: ERROR}, gold)]
    for name, (one, its_gold) in (tasks or {}).items():
        scan.tasks[name] = Scan()
        columns = output_columns(one, name) if one else {ERROR: f"{name}_{ERROR}"}
        views.append(_View(scan.tasks[name], one, columns, its_gold))
    for path in paths:
        with fs.open_input_file(f"{root}/{path}") as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            needed = [id_column] + [c for v in views for c in [*v.columns.values(), *v.gold]]
            table = parquet.read(columns=[c for c in dict.fromkeys(needed) if c in names])
        for view in views:
            _scan_file(view, table, names, id_column, path in new_files)
    for view in views:
        if view.facts:
            view.scan.facts = pd.concat(view.facts, ignore_index=True)
        if view.errors:
            view.scan.errors = pd.concat(view.errors, ignore_index=True)
    return scan


def _scan_file(view: _View, table: pa.Table, names: list[str], id_column: str,
               is_new: bool) -> None:
    scan, task, error = view.scan, view.task, view.columns[ERROR]
    scan.rows += table.num_rows
    scan.rows_new += table.num_rows if is_new else 0
    failed = (pc.is_valid(table.column(error)) if error in names
              else pa.array(np.zeros(table.num_rows, bool)))
    if id_column in names and error in names:
        bad = table.filter(failed)
        view.errors.append(pd.DataFrame({"id": bad.column(id_column).to_pylist(),
                                         "error": bad.column(error).to_pylist()}))
    ok = table.filter(pc.invert(failed))
    scan.rows_ok += ok.num_rows
    outputs = [f.name for f in task.output_fields()] if task else []
    columns = [view.columns[name] for name in outputs]
    if task is not None and ok.num_rows and all(c in names for c in columns):
        frame = pd.DataFrame(task.report_facts(ok.select(columns).rename_columns(outputs)))
        frame["_new"] = is_new
        view.facts.append(frame)
    if view.gold and all(c in names for c in view.gold):
        scan.gold_tables.append(table)


# ---------------------------------------------------------------- sections

def _rows(summary: dict, scan: Scan) -> dict:
    rows_out = summary.get("rows_out", scan.rows)
    return {"in": summary.get("rows_in"), "out": rows_out,
            "errored": summary.get("rows_errored", scan.rows - scan.rows_ok),
            "skipped": summary.get("rows_skipped"), "truncated": summary.get("rows_truncated"),
            "resumed": summary.get("rows_before", 0), "files_in": summary.get("files_in"),
            "corrupt_files_skipped": summary.get("corrupt_files_skipped") or [],
            "incremental": bool(summary.get("incremental")),
            "files_done_before": summary.get("files_done_before", 0),
            "in_output": scan.rows, "new_in_output": scan.rows_new}


def _time(summary: dict, stats: dict) -> dict | None:
    seconds = summary.get("seconds")
    if seconds is None and not stats:
        return None
    done = (summary.get("rows_in") or 0) - (summary.get("rows_before") or 0)
    # stages whose busy time was measured (the write is Ray's sink: rows and files only)
    # (a job with several tasks also times each task's inference, `inference:<name>`: shown
    # side by side in its task sections, not as stages beside the summed `inference`)
    stages = {name: values for name, values in (stats.get("stages") or {}).items()
              if "seconds" in values and not name.startswith("inference:")}
    busy = sum(float(s.get("seconds") or 0) for s in stages.values())
    ordered = [name for name in STAGES if name in stages] + [n for n in stages if n not in STAGES]
    return {
        "wall_seconds": seconds, "started": stats.get("started"),
        "finished": stats.get("finished"),
        "rows_per_second": done / seconds if seconds else None,
        "seconds_to_first_output": stats.get("seconds_to_first_output"),
        "stages": [{"stage": name, "seconds": float(stages[name].get("seconds") or 0),
                    "share": float(stages[name].get("seconds") or 0) / busy if busy else 0.0,
                    "rows": stages[name].get("rows"),
                    "blocks": stages[name].get("blocks", stages[name].get("files"))}
                   for name in ordered] or None,
        "throughput": throughput(stats.get("timeline")),
    }


def throughput(timeline: list | None) -> list[list[float]] | None:
    """(seconds, rows/s) from the (seconds, rows done) samples, smoothed over ~5 samples."""
    if not timeline or len(timeline) < 2:
        return None
    frame = pd.DataFrame(timeline, columns=["t", "rows"]).sort_values("t")
    rate = (frame["rows"].diff() / frame["t"].diff()).fillna(0).clip(lower=0)
    smooth = rate.rolling(5, min_periods=1, center=True).mean()
    return [[float(t), float(r)] for t, r in zip(frame["t"], smooth)]


def _tokens(stats: dict, summary: dict) -> dict | None:
    tokens = stats.get("tokens")
    if not tokens:
        return None
    padded = tokens.get("padded_tokens") or 0
    inference = ((stats.get("stages") or {}).get("inference") or {}).get("seconds")
    return {**tokens,
            "padding_efficiency": tokens.get("tokens", 0) / padded if padded else None,
            "tokens_per_second": (tokens.get("tokens", 0) / summary["seconds"]
                                  if summary.get("seconds") else None),
            "tokens_per_inference_second": (tokens.get("tokens", 0) / inference
                                            if inference else None)}


def _exploded(facts: pd.DataFrame, fact: str) -> pd.Series:
    values = facts[fact].explode() if facts[fact].map(_is_list).any() else facts[fact]
    return values.dropna()


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def summarize_panel(panel: Panel, facts: pd.DataFrame, rows: int) -> dict:
    """One output distribution as plain data: counts, a histogram, or a share."""
    base = {"kind": panel.kind, "fact": panel.fact, "title": panel.title, "rows": rows}
    if panel.kind == "share":
        values = facts[panel.fact].dropna().astype(bool)
        return {**base, "true": int(values.sum()), "total": int(len(values)),
                "share": float(values.mean()) if len(values) else None}
    values = _exploded(facts, panel.fact)
    if panel.kind == "counts":
        counts = values.astype(str).value_counts()
        top = counts.head(TOP_VALUES)
        scale = panel.per_rows / rows if panel.per_rows and rows else None
        return {**base, "counts": {str(k): int(v) for k, v in top.items()},
                "other": int(counts.iloc[TOP_VALUES:].sum()), "distinct": int(len(counts)),
                "total": int(counts.sum()), "per_rows": panel.per_rows,
                "rates": ({str(k): float(v * scale) for k, v in top.items()}
                          if scale is not None else None)}
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(numbers):
        return {**base, "n": 0, "edges": [], "counts": []}
    low, high = panel.range or (float(numbers.min()), float(numbers.max()))
    q1, q3 = np.percentile(numbers, [25, 75])
    fence = q3 + 3 * (q3 - q1)  # far outliers would squeeze the rest into one bar: not drawn
    if panel.range is None and high > fence > low:
        high = float(numbers[numbers <= fence].max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    integral = bool(np.all(numbers == np.round(numbers))) and panel.range is None
    bins = (np.arange(np.floor(low), np.ceil(high) + 2) - 0.5 if integral
            and high - low <= HISTOGRAM_BINS * 2 else HISTOGRAM_BINS)
    counts, edges = np.histogram(numbers, bins=bins,
                                 range=None if not isinstance(bins, int) else (low, high))
    return {**base, "n": int(len(numbers)), "edges": edges.tolist(), "counts": counts.tolist(),
            "above": int((numbers > edges[-1]).sum()), "below": int((numbers < edges[0]).sum()),
            "mean": float(numbers.mean()), "median": float(np.median(numbers)),
            "min": float(numbers.min()), "max": float(numbers.max()),
            "p5": float(np.percentile(numbers, 5)), "p95": float(np.percentile(numbers, 95))}


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def error_kind(message: str) -> str:
    """A message with its particulars (quoted values, numbers) blanked: the kind of error."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", message))


def group_errors(errors: pd.DataFrame) -> list[dict]:
    """Errors grouped by kind, most frequent first, each with one message and example ids."""
    if errors.empty:
        return []
    errors = errors.assign(kind=errors["error"].astype(str).map(error_kind))
    groups = []
    for kind, group in errors.groupby("kind", sort=False):
        groups.append({"kind": kind, "count": int(len(group)),
                       "message": str(group["error"].iloc[0]),
                       "example_ids": [_plain(v) for v in group["id"].head(ERROR_EXAMPLES)]})
    return sorted(groups, key=lambda g: -g["count"])


def drift(panels: list[Panel], scan: Scan, summary: dict) -> dict | None:
    """An incremental run: each output distribution of the rows it added against the rows
    earlier runs wrote. Counts: each value's share before and after, and the total variation
    distance (half the summed absolute differences: 0 same, 1 disjoint); histograms: mean and
    median; shares: the share."""
    facts = scan.facts
    if not summary.get("incremental") or facts.empty or "_new" not in facts:
        return None
    new, old = facts[facts["_new"]], facts[~facts["_new"]]
    if new.empty or old.empty:
        return None
    compared = []
    for panel in panels:
        if panel.fact not in facts.columns:
            continue
        entry: dict[str, Any] = {"kind": panel.kind, "title": panel.title}
        if panel.kind == "counts":
            before = _exploded(old, panel.fact).astype(str).value_counts(normalize=True)
            after = _exploded(new, panel.fact).astype(str).value_counts(normalize=True)
            both = pd.concat([before, after], axis=1, keys=["before", "after"]).fillna(0.0)
            both = both.sort_values("after", ascending=False)
            entry.update(tvd=float(0.5 * (both["before"] - both["after"]).abs().sum()),
                         before={k: float(v) for k, v in both["before"].head(TOP_VALUES).items()},
                         after={k: float(v) for k, v in both["after"].head(TOP_VALUES).items()})
        elif panel.kind == "histogram":
            b = pd.to_numeric(_exploded(old, panel.fact), errors="coerce").dropna()
            a = pd.to_numeric(_exploded(new, panel.fact), errors="coerce").dropna()
            entry.update(before={"mean": _f(b.mean()), "median": _f(b.median())},
                         after={"mean": _f(a.mean()), "median": _f(a.median())})
        else:
            entry.update(before=_f(old[panel.fact].dropna().astype(bool).mean()),
                         after=_f(new[panel.fact].dropna().astype(bool).mean()))
        compared.append(entry)
    return {"rows_new": int(len(new)), "rows_before": int(len(old)), "panels": compared}


def _f(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
