"""Running a job: preflight, then the streaming Ray Data pipeline
read -> tokenize (CPU tasks) -> infer (actor pool) -> postprocess -> Parquet, then a summary."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

from corpusmill.jobs.cluster.cluster_view import HEAD_RESOURCE
from corpusmill.jobs.console import RunConsole
from corpusmill.jobs.in_process import (
    PROCESS, Executor, choose_executor, execute_in_process, settle_in_process,
)
from corpusmill.jobs.in_process import node_table as in_process_nodes
from corpusmill.jobs.stores.corpus import Corpus, id_partitions
from corpusmill.jobs.stores.ledger import new_files
from corpusmill.jobs.stores.output import OutputFolder, checkpoint_path
from corpusmill.jobs.cluster.placement import (
    TASK_CPUS, Placement, fit_to_work, group_onnx_actors, share_placements,
)
from corpusmill.jobs.preflight import preflight, preflight_several, provenance
from corpusmill.jobs.progress import ProgressDisplay, ProgressWatcher
from corpusmill.jobs.cluster.ray_session import ensure_ray
from corpusmill.jobs.record import placement_line, placement_record, stats_record
from corpusmill.jobs.reporting.report import report_after_run
from corpusmill.jobs.stores.storage import check_shared_paths
from corpusmill.operators import light_workers
from corpusmill.operators.engines import ONNXRUNTIME, prepare_backend
from corpusmill.operators.plan import ERROR, JobPlan, SeveralPlan
from corpusmill.operators.readers.files import GENERATED_ID
from corpusmill.operators.stats import RunStats, corrupt_parts, stats_name
from corpusmill.ray_internals import set_repartition_cpus
from corpusmill.spec import JobSpec

log = logging.getLogger(__name__)

# Ray Data 2.60 adds a CheckpointFilter actor pool when a run resumes from committed ids; its
# actor reserves one whole CPU (not configurable), which placement must leave free.
CHECKPOINT_FILTER_CPUS = 1.0


@dataclass(frozen=True)
class RunSummary:
    job_id: str
    output: str
    rows_in: int
    rows_out: int
    rows_errored: int
    rows_skipped: int
    files_in: int
    seconds: float
    rows_before: int = 0             # rows an earlier run of this job had already written
    corrupt_files_skipped: tuple[str, ...] = ()
    preview: tuple[dict, ...] = ()   # a few output rows: id, outputs, error
    incremental: bool = False
    files_done_before: int = 0       # incremental: input files earlier runs had finished
    rows_truncated: int = 0          # rows whose input was cut to the model's window
    seconds_to_first_output: float | None = None  # from the run's start (the command's, from
                                                   # the CLI) to the first rows to the writer
    inputs_gone: tuple[str, ...] = ()  # input files earlier runs read that are gone now
    placement: dict = field(default_factory=dict)  # where it ran (jobs/record.py)
    log_path: str | None = None      # Ray's output during the run
    report: tuple[str, ...] = ()     # the run report's lines: metrics against gold, its path

    @property
    def nothing_new(self) -> bool:
        """An incremental run that found no new input file (and did nothing)."""
        return self.incremental and self.files_in == 0

    @property
    def partial(self) -> bool:
        """The run completed, but some rows have errors or were left out, or files were
        skipped as corrupt."""
        return bool(self.rows_errored or self.rows_skipped or self.corrupt_files_skipped)

    def lines(self) -> list[str]:
        if self.nothing_new:
            return [f"job {self.job_id}: nothing new: all {self.files_done_before} input "
                    f"file(s) were processed by earlier runs; output: {self.output}"]
        lines = []
        if self.incremental:
            lines.append(f"incremental: {self.files_in} new file(s); {self.files_done_before} "
                         f"done by earlier runs")
        rate = (self.rows_in - self.rows_before) / self.seconds if self.seconds > 0 else 0.0
        lines += [f"job {self.job_id}: {self.rows_in} rows in from {self.files_in} file(s), "
                  f"{self.rows_out} out, {self.rows_errored} with errors, {self.rows_skipped} "
                  f"skipped",
                  f"{self.seconds:.1f} s ({rate:.1f} rows/s{self._first_output()}); "
                  f"output: {self.output}"]
        if self.placement.get("nodes"):
            lines.append(placement_line(self.placement))
        if self.rows_before:
            lines.append(f"resumed: {self.rows_before} rows were already done by an earlier "
                         f"run, {self.rows_out - self.rows_before} written now")
        if self.rows_truncated:
            lines.append(f"{self.rows_truncated} row(s) had inputs longer than the model's "
                         f"window and were cut to it (input_truncated = true)")
        if self.corrupt_files_skipped:
            lines.append(f"skipped {len(self.corrupt_files_skipped)} corrupt file(s) or part(s): "
                         f"{', '.join(self.corrupt_files_skipped)}")
        if self.inputs_gone:
            lines.append(f"{len(self.inputs_gone)} input file(s) that earlier runs read are gone "
                         f"({', '.join(self.inputs_gone[:5])}); their rows stay in the output")
        return lines + [_preview_line(row) for row in self.preview] + list(self.report)


    def _first_output(self) -> str:
        first = self.seconds_to_first_output
        return "" if first is None else f", first rows written at {first:.1f} s"


def _preview_line(row: dict, width: int = 160) -> str:
    """One output row on one line: strings cut short, lists shown by their first item."""
    def short(value):
        if isinstance(value, float):
            return f"{value:.3f}"
        if isinstance(value, list):
            return f"[{short(value[0])}, ... {len(value)} items]" if len(value) > 1 else (
                f"[{short(value[0])}]" if value else "[]")
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {short(v)}" for k, v in value.items()) + "}"
        if isinstance(value, str):
            return repr(value if len(value) <= 40 else value[:37] + "...")
        return str(value)

    line = "  " + "  ".join(f"{k}={short(v)}" for k, v in row.items() if v is not None)
    return line if len(line) <= width else line[:width - 3] + "..."


class OutputIntegrityError(RuntimeError):
    """The output breaks the exactly-once promise (an id written twice). Never expected; the
    run fails loudly rather than report success."""


def run_job(spec: JobSpec, *, address: str | None = None, verbose: bool = False,
            connect_timeout_s: float | None = None, keep_ray: bool = False,
            report: bool = True, started_at: float | None = None) -> RunSummary:
    """Run `spec` to completion. `address`: a Ray cluster (default RAY_ADDRESS; none: a local
    Ray); `verbose`: leave Ray's own output on the terminal instead of the run's log file;
    `keep_ray`: leave a Ray this run started running for the next (the Python API);
    `report`: build the run report and dataset card (corpusmill.annotate's scratch output
    does without); `started_at`: when the run began (epoch seconds; the CLI gives its
    process's start, so the summary's seconds are the whole command's), default now.

    The steps: preflight (spec, input, model(s): a JobError before Ray), what the output
    folder holds (refuse, resume or replace), the work left, then on Ray: settle the plan
    against the cluster and execute; then verify the output (exactly once), summarise,
    record the manifest and build the report."""
    started_at = started_at or time.time()
    start = time.monotonic() - max(0.0, time.time() - started_at)
    plan, corpus = preflight_several(spec) if spec.several else preflight(spec)
    output = OutputFolder(spec.output)
    state = output.state(spec)
    work = _work_to_do(spec, plan, corpus, output, state)
    if work.nothing_new:
        return RunSummary(job_id=spec.job_id, output=spec.output, rows_in=0, rows_out=0,
                          rows_errored=0, rows_skipped=0, files_in=0, seconds=0.0,
                          incremental=True, files_done_before=len(corpus.files))
    run_id = uuid.uuid4().hex[:12]
    executor = choose_executor(spec, address, rows=work.corpus.num_rows - work.rows_before,
                               rows_before=work.rows_before)
    with output.lock(run_id), RunConsole(spec.output, run_id, verbose,
                                         ray=executor.kind != PROCESS) as console:
        if executor.kind == PROCESS:
            run = _execute_here(spec, plan, work, state, output, console, run_id, executor)
        else:
            started_ray = ensure_ray(address, connect_timeout_s)
            try:
                run = _execute_on_ray(spec, plan, work, state, output, console, run_id,
                                      executor)
            finally:
                if started_ray and not keep_ray:
                    import ray
                    ray.shutdown()
        counts = _verify_output(spec, run.plan, work, output)
        summary = _summarize(spec, run, work, counts, output,
                             seconds=time.monotonic() - start, started_at=started_at)
        manifest = _record(summary, run, work, counts, output, started_at)
        if report:
            summary = dataclasses.replace(summary, report=report_after_run(spec.output, manifest))
    return dataclasses.replace(summary, log_path=console.log_path)  # where the log ended up


@dataclass(frozen=True)
class Executed:
    """What a run did on Ray: the plan as settled, where it ran, what it recorded."""
    plan: JobPlan | SeveralPlan
    placement: Placement | dict
    manifest: dict           # the manifest's fields known before the run (job, spec, inputs)
    files_before: frozenset  # data files the output held before
    started: str             # when execution began (ISO time)
    snapshot: dict           # the run's statistics (operators/stats.py)
    timeline: list           # [[seconds, rows done]]
    nodes: list              # Ray's node table
    executor: Executor       # where it ran (Ray, or this process) and why


def _execute_on_ray(spec: JobSpec, plan, work: "Work", state, output: OutputFolder,
                    console: RunConsole, run_id: str, executor: Executor) -> Executed:
    """Settle the plan against the cluster (a placement that cannot run is refused before
    any output), replace the output when asked, mark the manifest running, and run."""
    corpus = work.corpus
    plan, placement = settle(plan, corpus.num_rows - work.rows_before,
                             reserved_cpus=CHECKPOINT_FILTER_CPUS if state.resumed else 0,
                             run_id=run_id, corpus=corpus)
    log.info("on Ray: %s", executor.reason)
    manifest, files_before, started = _begin(spec, work, state, output, run_id)
    snapshot, timeline = _execute(plan, corpus, console,
                                  total=corpus.num_rows - work.rows_before)
    return Executed(plan, placement, manifest, files_before, started, snapshot, timeline,
                    _node_table(), executor)


def _execute_here(spec: JobSpec, plan, work: "Work", state, output: OutputFolder,
                  console: RunConsole, run_id: str, executor: Executor) -> Executed:
    """The job in this process, without Ray (jobs/in_process.py); the same steps around it."""
    corpus = work.corpus
    plan, placement = settle_in_process(plan, corpus, run_id)
    manifest, files_before, started = _begin(spec, work, state, output, run_id)
    total = corpus.num_rows - work.rows_before
    display = ProgressDisplay(console.term, console.is_tty, label=f"corpusmill {spec.task}")

    def watcher(read_snapshot):
        return ProgressWatcher(read_snapshot, display, total=total,
                               block_rows=spec.batching.window_rows)

    snapshot, timeline, threads = execute_in_process(plan, corpus, watcher)
    placement = dataclasses.replace(placement, torch_threads=threads)
    return Executed(plan, placement, manifest, files_before, started, snapshot, timeline,
                    in_process_nodes(), executor)


def _begin(spec: JobSpec, work: "Work", state, output: OutputFolder,
           run_id: str) -> tuple[dict, frozenset, str]:
    """Replace the output when asked and mark the manifest running: the manifest's fields
    known before the run, the data files the output held before, when execution began."""
    if state.replace:
        output.replace()
    manifest = {"job_id": spec.job_id, "run_id": run_id, "spec": spec.model_dump(mode="json"),
                "provenance": provenance(spec, work.corpus),
                "inputs": {**work.inputs_before, **work.corpus.stamps()}}
    output.write_manifest({**manifest, "status": "running"})
    return manifest, frozenset(output.data_files()), _now()


def _verify_output(spec: JobSpec, plan, work: "Work", output: OutputFolder) -> dict:
    """The output's counts, from its footers; an id written twice fails the run loudly; an
    empty output gets one empty file of the schema; an incremental run records its files."""
    counts = output.counts(plan.id_column, work.scope)
    if counts["ids_duplicated"]:
        raise OutputIntegrityError(
            f"output {spec.output!r} holds {counts['ids_duplicated']} id(s) more than once")
    if counts["files"] == 0:
        output.write_empty(plan.output_schema)
    if spec.incremental:
        output.record_ledger(work.ledger, work.corpus.files)
    return counts


def _summarize(spec: JobSpec, run: Executed, work: "Work", counts: dict,
               output: OutputFolder, *, seconds: float, started_at: float) -> RunSummary:
    corpus = work.corpus
    return RunSummary(
        job_id=spec.job_id, output=spec.output, rows_in=corpus.num_rows,
        rows_out=counts["rows_out"], rows_errored=counts["rows_errored"],
        rows_truncated=counts["rows_truncated"],
        rows_skipped=corpus.num_rows - counts["rows_out"], files_in=len(corpus.files),
        corrupt_files_skipped=corpus.skipped_files + corrupt_parts(run.snapshot),
        inputs_gone=work.gone, seconds=seconds, rows_before=work.rows_before,
        seconds_to_first_output=_first_output(run.snapshot, started_at),
        preview=tuple(output.preview(_preview_columns(run.plan))),
        incremental=spec.incremental, files_done_before=len(work.ledger),
        placement={**_placement_record(run.placement, run.plan, run.snapshot, run.nodes),
                   "executor": run.executor.kind, "executor_reason": run.executor.reason})


def _record(summary: RunSummary, run: Executed, work: "Work", counts: dict,
            output: OutputFolder, started_at: float) -> dict:
    """The complete manifest, written: the summary, placement and stats (jobs/record.py)."""
    written = sorted(set(output.data_files()) - run.files_before)
    record = dataclasses.asdict(summary)
    for key in ("preview", "placement", "log_path", "report"):
        del record[key]
    manifest = {**run.manifest, "status": "complete", "summary": record,
                "placement": summary.placement,
                "stats": stats_record(run.snapshot, run.timeline, run.started, _now(), written,
                                      rows_written=counts["rows_out"] - work.rows_before,
                                      process_started=started_at)}
    output.write_manifest(manifest)
    return manifest


def settle(plan: JobPlan | SeveralPlan, rows: int | None, *, reserved_cpus: float, run_id: str,
           corpus: Corpus | None) -> tuple[JobPlan | SeveralPlan,
                                           Placement | dict[str, Placement]]:
    """The plan made concrete against the cluster: where each model runs (GPUs, actors,
    threads), its backend, where it tokenizes, the run's id and statistics actor. A job with
    several tasks places their pools side by side (jobs/cluster/placement.py `share_placements`);
    its placement is then name -> Placement. `rows`: the rows to process (None: unknown, a
    caller's Ray Dataset); `corpus`: None for rows that are not files (the backend is then
    the spec's, never an exported graph)."""
    named = plan.tasks if isinstance(plan, SeveralPlan) else {"": plan}
    if corpus is not None:
        for one in named.values():
            check_shared_paths(one.spec, one.model_ref)
    placements = share_placements([one.spec.resources for one in named.values()],
                                  _cluster_view(), node_cores=os.cpu_count() or 1,
                                  reserved_cpus=reserved_cpus)
    share = len(named)
    settled, where = {}, {}
    for (name, one), placement in zip(named.items(), placements):
        log.info("placement%s: %s", f" of {name}" if name else "", placement.reason)
        resources = one.spec.resources
        cores = max(1, (os.cpu_count() or 1) // share)
        if rows is not None:
            placement = fit_to_work(placement, resources, rows, one.spec.batching.window_rows,
                                    node_cores=cores)
        one = dataclasses.replace(one, num_gpus=placement.num_gpus,
                                  min_actors=placement.min_actors,
                                  max_actors=placement.max_actors,
                                  torch_threads=placement.torch_threads, run_id=run_id,
                                  stats_name=stats_name(run_id),
                                  actor_cpus=placement.cpus_per_actor)
        if corpus is not None:
            one = prepare_backend(one, corpus)  # one.backend: torch or onnxruntime
        if one.backend == ONNXRUNTIME:
            placement = group_onnx_actors(placement, resources, node_cores=cores)
            one = dataclasses.replace(one, min_actors=placement.min_actors,
                                      max_actors=placement.max_actors,
                                      torch_threads=placement.torch_threads)
        settled[name] = dataclasses.replace(one, tokenize_in_actor=tokenize_in_actor(one))
        where[name] = placement
    if not isinstance(plan, SeveralPlan):
        return settled[""], where[""]
    return dataclasses.replace(plan, tasks=settled, run_id=run_id,
                               stats_name=stats_name(run_id)), where


def _placement_record(placement, plan, snapshot: dict, nodes: list[dict]) -> dict:
    """The manifest's placement: a job with several tasks records each task's pool under
    `tasks`, and at the top level its first task's settings with every pool's actors (the
    nodes' rows then count a row once per task)."""
    if not isinstance(plan, SeveralPlan):
        return placement_record(placement, plan, snapshot, nodes)
    tasks = {name: placement_record(placement[name], one, snapshot, nodes, task=name)
             for name, one in plan.tasks.items()}
    first = next(iter(plan.tasks))
    every_pool = placement_record(placement[first], plan.tasks[first], snapshot, nodes)
    return {**every_pool, "tasks": {name: {key: record[key] for key in (
        "device", "num_gpus_per_actor", "dtype", "backend", "decided", "actors",
        "torch_threads")} for name, record in tasks.items()}}


@dataclass(frozen=True)
class Work:
    """What this run is to process: the corpus (an incremental run's new files only), and what
    earlier runs did."""
    corpus: Corpus
    rows_before: int = 0             # rows of `corpus` earlier runs committed
    scope: object = None             # incremental: ids of the new files (counts are theirs)
    ledger: dict = field(default_factory=dict)
    inputs_before: dict = field(default_factory=dict)  # input stamps earlier runs recorded
    gone: tuple[str, ...] = ()       # input files earlier runs read that are gone now
    nothing_new: bool = False


def _work_to_do(spec: JobSpec, plan: JobPlan, corpus: Corpus, output: OutputFolder,
                state) -> Work:
    """Resume: every file, none of them changed since earlier runs read it (refused, naming
    them). Incremental: only files no earlier run finished (a finished one that changed is
    refused by the ledger)."""
    inputs_before = {} if state.replace else output.recorded_inputs()
    if not spec.incremental:
        gone = output.refuse_changed_inputs(corpus) if state.resumed else ()
        return Work(corpus=corpus, rows_before=state.rows_before, inputs_before=inputs_before,
                    gone=gone)
    ledger = {} if state.replace else output.ledger()
    todo = new_files(corpus.files, ledger)
    if not todo:
        return Work(corpus=corpus, ledger=ledger, nothing_new=True)
    id_column = None if plan.id_column == GENERATED_ID else plan.id_column
    # the new files' ids, hashed into partitions on local disk (jobs/stores/ids.py), not held here
    scope = id_partitions(corpus.fs, todo, id_column,
                          plan.read_schema.field(plan.id_column).type, corpus.num_rows)
    rows_before = 0 if state.replace else output.committed_rows(plan.id_column, scope)
    return Work(corpus=dataclasses.replace(corpus, files=todo), rows_before=rows_before,
                scope=scope, ledger=ledger, inputs_before=inputs_before)


def _execute(plan: JobPlan, corpus: Corpus, console: RunConsole,
             total: int) -> tuple[dict, list]:
    """Run the pipeline into the output folder, showing progress; the run's statistics
    snapshot and throughput timeline."""
    import ray

    if not corpus.num_rows:
        return {}, []
    # on the head node, so losing a worker node never loses the run's statistics
    stats = ray.remote(num_cpus=0)(RunStats).options(
        name=plan.stats_name, resources={HEAD_RESOURCE: 0.001}).remote()
    label = " + ".join(plan.tasks) if isinstance(plan, SeveralPlan) else plan.spec.task
    display = ProgressDisplay(console.term, console.is_tty, label=f"corpusmill {label}")
    spec = plan.spec
    try:
        with ProgressWatcher(lambda: ray.get(stats.snapshot.remote(), timeout=5), display,
                             total=total,
                             block_rows=spec.batching.window_rows) as watcher, \
                _checkpointing(plan), warnings.catch_warnings():
            # write_parquet's task options are only reachable this way in Ray 2.60
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            build_dataset(plan, corpus).write_parquet(
                spec.output, partition_cols=spec.partition_by or None,
                ray_remote_args={"num_cpus": TASK_CPUS, "max_retries": spec.resources.max_retries,
                                 "runtime_env": light_workers.runtime_env()})
        return watcher.snapshot, watcher.timeline
    finally:
        ray.kill(stats)


@contextlib.contextmanager
def _checkpointing(plan: JobPlan):
    """Ray Data's row-id checkpointing, kept in the output folder: rows committed by an earlier
    run of this job are filtered out at read time, so a rerun finishes the job."""
    from ray.data import DataContext
    from ray.data.checkpoint import CheckpointConfig

    context = DataContext.get_current()
    previous = context.checkpoint_config
    context.checkpoint_config = CheckpointConfig(
        id_column=plan.id_column, checkpoint_path=checkpoint_path(plan.spec.output),
        delete_checkpoint_on_success=False)
    try:
        yield
    finally:
        context.checkpoint_config = previous


def _preview_columns(plan: JobPlan | SeveralPlan) -> list[str]:
    """id, the kept input text (else the first kept column), the task's outputs, error; with
    several tasks, each task's first output."""
    if isinstance(plan, SeveralPlan):
        inputs = [c for one in plan.tasks.values() for c in one.input_columns.values()]
        outputs = [f"{name}_{one.task.output_fields()[0].name}"
                   for name, one in plan.tasks.items()]
    else:
        inputs = list(plan.input_columns.values())
        outputs = [f.name for f in plan.task.output_fields()]
    context = [c for c in dict.fromkeys(inputs) if c in plan.kept_columns][:1] or (
        plan.kept_columns[:1])
    return [plan.id_column, *context, *outputs, ERROR]


def build_dataset(plan: JobPlan, corpus: Corpus):
    """The lazy Ray Dataset of output rows (nothing runs until it is consumed).

    Every task Ray Data schedules asks for a fraction of a CPU (TASK_CPUS), so none waits for a
    whole free CPU on a small head node; on a 2-core machine a resumed run also holds Ray's
    CheckpointFilter actor (1 CPU, not configurable), and whole-CPU tasks would never fit
    beside it and the inference actors."""
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for task retries (`max_retries`) or actor restarts;
        # passing them through **ray_remote_args is the documented way, and deprecated.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return _build_dataset(plan, corpus)


def _build_dataset(plan: JobPlan, corpus: Corpus):
    import ray.data

    from corpusmill.operators.readers.read import CorpusDatasource

    spec = plan.spec
    window = spec.batching.window_rows
    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema,
                              spec.id_column, rows_per_block=window, stats_name=plan.stats_name,
                              skip_corrupt=spec.skip_corrupt_files)
    retries = spec.resources.max_retries
    ds = ray.data.read_datasource(source, num_cpus=TASK_CPUS,
                                  ray_remote_args={"max_retries": retries})
    if isinstance(plan, SeveralPlan):
        return process_several(plan, ds, blocks_sized=True)
    return process_rows(plan, ds, blocks_sized=True)


def tokenize_in_actor(plan: JobPlan) -> bool:
    """`resources.tokenize` settled against the placement: `auto` tokenizes inside the
    inference actors when each is one CPU thread (on a CPU node the cores that would run
    tokenize tasks are the actors' own: no hand-off of token ids, no extra processes), and
    in tasks ahead of GPU actors or of multi-threaded CPU actors (onnxruntime's), which a
    serial tokenizer inside them would leave waiting."""
    choice = plan.spec.resources.tokenize
    if choice != "auto":
        return choice == "actor"
    return not plan.num_gpus and plan.torch_threads <= 1


def process_rows(plan: JobPlan, ds, *, blocks_sized: bool = False):
    """[tokenize ->] infer -> postprocess over `ds`, a Ray Dataset of rows in the reader's
    column contract (`plan.read_schema`): the files' reader above (`blocks_sized`: its blocks
    hold at most `window_rows` rows already), or a caller's own Ray Dataset
    (corpusmill.annotate). Tokenizing runs in tasks or inside the inference actors
    (`plan.tokenize_in_actor`). Lazy, as `ds` is."""
    import ray.data

    from corpusmill.operators.tokenize import tokenize_batch

    spec = plan.spec
    window = spec.batching.window_rows
    retries = spec.resources.max_retries
    if plan.tokenize_in_actor:
        if not blocks_sized:
            ds = set_repartition_cpus(ds.repartition(target_num_rows_per_block=window),
                                      TASK_CPUS)
        return _infer_and_postprocess(plan, ds)
    # As many tokenize tasks at a time as inference actors at most: a fast tokenizer outruns a
    # model many times over, and each extra task is a worker process importing transformers,
    # which on a small machine delays the actors' start and steals their cores. Tasks carry
    # `max_retries`, actors `max_restarts`: their remote args never match, so Ray does not fuse
    # tokenization into the inference actors, and it overlaps with inference.
    # Tokenize and postprocess (with the write) tasks run in workers without torch, which the
    # inference actors never share (operators/light_workers.py).
    ds = ds.map_batches(tokenize_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                        batch_size=window, num_cpus=TASK_CPUS, max_retries=retries,
                        compute=ray.data.TaskPoolStrategy(size=plan.max_actors),
                        runtime_env=light_workers.runtime_env())
    # Blocks of `window` rows are the units actors take, one at a time on CPU: a whole file
    # arriving as one block, or two blocks queued on one actor while another idles, would
    # leave cores unused (a 4,096-row window ran at half speed on 2 actors that way).
    ds = set_repartition_cpus(ds.repartition(target_num_rows_per_block=window), TASK_CPUS)
    return _infer_and_postprocess(plan, ds)


def process_several(plan: SeveralPlan, ds, *, blocks_sized: bool = False):
    """The tasks of a job with several over `ds` (rows in `plan.read_schema`), one actor pool
    each, one after another on the same blocks, then one postprocess (operators/several.py).
    Tasks that tokenize alike share one tokenization: in tasks ahead of the pools, or in the
    first task's actors when that task tokenizes in its actors (single-core CPU actors)."""
    import ray.data

    from corpusmill.operators.several import TaskStage, postprocess_several, tokenize_group

    spec = plan.spec
    window = next(iter(plan.tasks.values())).spec.batching.window_rows
    retries = spec.resources.max_retries
    stages = []  # (name, group, shares, last)
    tasks = dict(plan.tasks)
    tokenized_in_tasks = False
    for group, names in enumerate(plan.share_groups()):
        first = plan.tasks[names[0]]
        alone = len(names) == 1
        if not first.tokenize_in_actor:
            tokenized_in_tasks = True
            ds = ds.map_batches(tokenize_group, fn_kwargs={"plan": first, "group": group},
                                batch_format="pyarrow", batch_size=window, num_cpus=TASK_CPUS,
                                max_retries=retries,
                                compute=ray.data.TaskPoolStrategy(size=first.max_actors),
                                runtime_env=light_workers.runtime_env())
        for k, name in enumerate(names):
            # the group's first task tokenizes in its actors when its plan says so; the
            # others then read its tokens (never tokenizing themselves)
            tokenizes = k == 0 and first.tokenize_in_actor
            tasks[name] = dataclasses.replace(tasks[name], tokenize_in_actor=tokenizes)
            stages.append((name, None if alone and tokenizes else group,
                           tokenizes and not alone, k == len(names) - 1))
    plan = dataclasses.replace(plan, tasks=tasks)
    if tokenized_in_tasks or not blocks_sized:
        ds = set_repartition_cpus(ds.repartition(target_num_rows_per_block=window), TASK_CPUS)
    for name, group, shares, last in stages:
        one = tasks[name]
        pool = ray.data.ActorPoolStrategy(
            min_size=one.min_actors, max_size=one.max_actors,
            max_tasks_in_flight_per_actor=None if one.num_gpus else 1)
        ds = ds.map_batches(TaskStage, fn_constructor_kwargs={
                                "plan": one, "name": name, "group": group, "shares": shares,
                                "last": last},
                            batch_format="pyarrow", batch_size=window, compute=pool,
                            num_cpus=one.cpus_per_actor, num_gpus=one.num_gpus,
                            max_restarts=retries, max_task_retries=-1)
    return ds.map_batches(postprocess_several, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                          batch_size=None, num_cpus=TASK_CPUS, max_retries=retries,
                          runtime_env=light_workers.runtime_env())


def _infer_and_postprocess(plan: JobPlan, ds):
    import ray.data

    from corpusmill.operators.infer import Infer
    from corpusmill.operators.postprocess import postprocess_batch

    spec = plan.spec
    window = spec.batching.window_rows
    retries = spec.resources.max_retries
    # The inference pool: fixed (min == max) or elastic, growing while blocks queue; on an
    # autoscaling cluster its pending actors make the cluster autoscaler add nodes. Actor
    # restarts are bounded (`max_retries`); a block sent to an actor that is restarting waits
    # for it instead of burning its retries in milliseconds ("actor temporarily unavailable"
    # while a lost GPU node is replaced failed whole jobs), so its retries are unbounded: an
    # actor that dies for good fails its blocks at once.
    pool = ray.data.ActorPoolStrategy(
        min_size=plan.min_actors, max_size=plan.max_actors,
        max_tasks_in_flight_per_actor=None if plan.num_gpus else 1)
    ds = ds.map_batches(Infer, fn_constructor_kwargs={"plan": plan}, batch_format="pyarrow",
                        batch_size=window, compute=pool,
                        num_cpus=plan.cpus_per_actor, num_gpus=plan.num_gpus,
                        max_restarts=retries, max_task_retries=-1)
    return ds.map_batches(postprocess_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                          batch_size=None, num_cpus=TASK_CPUS, max_retries=retries,
                          runtime_env=light_workers.runtime_env())


def _cluster_view():
    from corpusmill.jobs.cluster.cluster_view import read_cluster_view

    return read_cluster_view()


def _node_table() -> list[dict]:
    import ray

    try:
        return ray.nodes()
    except Exception:  # noqa: BLE001 - the record is informative; never fail a run for it
        return []


def _first_output(snapshot: dict, started_at: float) -> float | None:
    first = snapshot.get("first_output_at")
    return None if first is None else round(first - started_at, 1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
