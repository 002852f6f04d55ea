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
from dataclasses import dataclass

from corpusmill.errors import JobError
from corpusmill.jobs.ledger import new_files, read_ledger, record_files
from corpusmill.jobs.lock import OutputLock
from corpusmill.jobs.preflight import Corpus, preflight, provenance
from corpusmill.jobs.report import report_after_run
from corpusmill.spec import JobSpec, Resources
from corpusmill.jobs.storage import check_shared_paths
from corpusmill.operators.plan import ERROR, JobPlan
from corpusmill.operators.read import GENERATED_ID, corpus_ids
from corpusmill.operators.write import (
    check_output, checkpoint_path, committed_rows, output_counts, output_preview,
    replace_output, write_empty, write_manifest,
)

log = logging.getLogger(__name__)

TASK_CPUS = 0.25  # CPUs Ray reserves per read/tokenize/postprocess/write task
MAX_AUTO_CPU_ACTORS = 8  # `concurrency: auto` on CPU: each actor holds its own model copy
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
        rate = (self.rows_in - self.rows_before) / self.seconds if self.seconds > 0 else 0.0
        return ([f"incremental: {self.files_in} new file(s); {self.files_done_before} done by "
                 f"earlier runs"] if self.incremental else []) + [
            f"job {self.job_id}: {self.rows_in} rows in from {self.files_in} file(s), "
            f"{self.rows_out} out, {self.rows_errored} with errors, {self.rows_skipped} skipped",
            f"{self.seconds:.1f} s ({rate:.1f} rows/s); output: {self.output}",
        ] + ([f"resumed: {self.rows_before} rows were already done by an earlier run, "
              f"{self.rows_out - self.rows_before} written now"] if self.rows_before else []) + ([
            f"{self.rows_truncated} row(s) had inputs longer than the model's window and were cut "
            f"to it (input_truncated = true)"] if self.rows_truncated else []) + ([f"skipped {len(self.corrupt_files_skipped)} corrupt file(s): "
              f"{', '.join(self.corrupt_files_skipped)}"] if self.corrupt_files_skipped else []) + [_preview_line(row) for row in self.preview] + list(self.report)


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


def run_job(spec: JobSpec) -> RunSummary:
    start = time.monotonic()
    plan, corpus = preflight(spec)
    state = check_output(spec.output, spec.output_mode, spec.job_id)
    run_id = uuid.uuid4().hex[:12]
    ledger, scope, rows_before = {}, None, state.rows_before
    if spec.incremental:
        ledger = {} if state.replace else read_ledger(spec.output)
        todo = new_files(corpus.files, ledger)
        if not todo:
            return RunSummary(job_id=spec.job_id, output=spec.output, rows_in=0, rows_out=0,
                              rows_errored=0, rows_skipped=0, files_in=0, seconds=0.0,
                              incremental=True, files_done_before=len(corpus.files))
        corpus = dataclasses.replace(corpus, files=todo)
        id_column = None if plan.id_column == GENERATED_ID else plan.id_column
        scope = corpus_ids(corpus.fs, todo, id_column, plan.read_schema.field(plan.id_column).type)
        rows_before = 0 if state.replace else committed_rows(spec.output, plan.id_column, scope)
    with OutputLock(spec.output, run_id):
        started_ray = _ensure_ray()
        try:
            check_shared_paths(spec, plan.model_ref)
            # refuses a placement that cannot run, before any output
            plan = _place(plan, run_id,
                          reserved_cpus=CHECKPOINT_FILTER_CPUS if state.resumed else 0)
            if state.replace:
                replace_output(spec.output)
            base_manifest = {"job_id": spec.job_id, "run_id": run_id,
                             "spec": spec.model_dump(mode="json"), "provenance": provenance(spec)}
            write_manifest(spec.output, {**base_manifest, "status": "running"})
            if corpus.num_rows:
                with _checkpointing(plan):
                    build_dataset(plan, corpus).write_parquet(
                        spec.output, partition_cols=spec.partition_by or None,
                        ray_remote_args={"num_cpus": TASK_CPUS,
                                         "max_retries": spec.resources.max_retries})
        finally:
            if started_ray:
                import ray
                ray.shutdown()
        counts = output_counts(spec.output, plan.id_column, scope)
        if counts["ids_duplicated"]:
            raise OutputIntegrityError(
                f"output {spec.output!r} holds {counts['ids_duplicated']} id(s) more than once")
        if counts["files"] == 0:
            write_empty(spec.output, plan.output_schema)
        if spec.incremental:
            record_files(spec.output, ledger, corpus.files)
        summary = RunSummary(
            job_id=spec.job_id, output=spec.output, rows_in=corpus.num_rows,
            rows_out=counts["rows_out"], rows_errored=counts["rows_errored"],
            rows_truncated=counts["rows_truncated"],
            rows_skipped=corpus.num_rows - counts["rows_out"], files_in=len(corpus.files),
            corrupt_files_skipped=corpus.skipped_files,
            seconds=time.monotonic() - start, rows_before=rows_before,
            preview=tuple(output_preview(spec.output, _preview_columns(plan))),
            incremental=spec.incremental, files_done_before=len(ledger))
        record = dataclasses.asdict(summary)
        del record["preview"], record["report"]
        manifest = {**base_manifest, "status": "complete", "summary": record}
        write_manifest(spec.output, manifest)
        summary = dataclasses.replace(summary, report=report_after_run(spec.output, manifest))
    return summary


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


def _preview_columns(plan: JobPlan) -> list[str]:
    """id, the kept input text (else the first kept column), the task's outputs, error."""
    kept_inputs = [c for c in plan.input_columns.values() if c in plan.kept_columns]
    context = kept_inputs or plan.kept_columns[:1]
    outputs = [f.name for f in plan.task.output_fields()]
    return [plan.id_column, *context, *outputs, ERROR]


def build_dataset(plan: JobPlan, corpus: Corpus):
    """The lazy Ray Dataset of output rows (nothing runs until it is consumed)."""
    import ray.data

    from corpusmill.operators.infer import Infer
    from corpusmill.operators.postprocess import postprocess_batch
    from corpusmill.operators.read import CorpusDatasource
    from corpusmill.operators.tokenize import tokenize_batch

    spec = plan.spec
    window = spec.batching.window_rows
    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema,
                              spec.id_column, rows_per_block=window)
    # Fractional CPUs everywhere: on a 2-core machine a resumed run also holds Ray's
    # CheckpointFilter actor (1 CPU, not configurable); with whole-CPU tasks the read task
    # never fits beside it and the inference actor, and the job waits forever.
    retries = spec.resources.max_retries
    # Tasks carry `max_retries`, actors `max_restarts`: their remote args never match, so Ray
    # does not fuse tokenization into the inference actors, and it overlaps with inference.
    with warnings.catch_warnings():  # read retries are only reachable this way in Ray 2.60
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ray.data.read_datasource(source, num_cpus=TASK_CPUS,
                                      ray_remote_args={"max_retries": retries})
    # As many tokenize tasks at a time as inference actors: a fast tokenizer outruns a model
    # many times over, and each extra task is a worker process importing transformers, which
    # on a small machine delays the actors' start and steals their cores.
    ds = ds.map_batches(tokenize_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                        batch_size=window, num_cpus=TASK_CPUS, max_retries=retries,
                        compute=ray.data.TaskPoolStrategy(size=plan.concurrency))
    # Blocks of `window` rows are the units actors take, one at a time on CPU: a whole file
    # arriving as one block, or two blocks queued on one actor while another idles, would
    # leave cores unused (a 4,096-row window ran at half speed on 2 actors that way).
    ds = ds.repartition(target_num_rows_per_block=window)
    ds = ds.map_batches(Infer, fn_constructor_kwargs={"plan": plan}, batch_format="pyarrow",
                        batch_size=window,
                        compute=ray.data.ActorPoolStrategy(
                            size=plan.concurrency,
                            max_tasks_in_flight_per_actor=None if plan.num_gpus else 1),
                        num_cpus=spec.resources.cpus_per_actor, num_gpus=plan.num_gpus,
                        max_restarts=retries, max_task_retries=retries)
    return ds.map_batches(postprocess_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                          batch_size=None, num_cpus=TASK_CPUS, max_retries=retries)


def _ensure_ray() -> bool:
    """Connect to RAY_ADDRESS, or start a local Ray on loopback. True when we started one."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING,
                 _node_ip_address="127.0.0.1")
    return True


def _place(plan: JobPlan, run_id: str, reserved_cpus: float) -> JobPlan:
    """Resolve `auto` resources against the cluster Ray sees, less `reserved_cpus` that Ray
    Data's own actors will hold (see `resolve_placement`)."""
    import ray

    cluster = ray.cluster_resources()
    placement = resolve_placement(plan.spec.resources,
                                  cluster_cpus=cluster.get("CPU", 0) - reserved_cpus,
                                  cluster_gpus=cluster.get("GPU", 0),
                                  node_cores=os.cpu_count() or 1)
    return dataclasses.replace(plan, num_gpus=placement.num_gpus,
                               concurrency=placement.concurrency,
                               torch_threads=placement.torch_threads, run_id=run_id)


@dataclass(frozen=True)
class Placement:
    num_gpus: float      # per inference actor
    concurrency: int     # inference actors
    torch_threads: int   # per CPU inference actor


def resolve_placement(resources: Resources, cluster_cpus: float, cluster_gpus: float,
                      node_cores: int) -> Placement:
    """One actor per GPU when there are GPUs, else one single-threaded actor per CPU core (at
    most MAX_AUTO_CPU_ACTORS, and only as many as leave room for the tasks). On CPU, actors
    side by side beat one actor's threads: two 1-thread actors ran ~1.19x the rows/s of one
    2-thread process on 2 cores (bench/RESULTS.md), as no thread waits on another.
    A placement whose actors would reserve every CPU is refused: Ray could then never
    schedule the read and tokenize tasks, and the job would wait forever."""
    if resources.num_gpus == "auto":
        num_gpus = 1.0 if cluster_gpus >= 1 else 0.0
    else:
        num_gpus = float(resources.num_gpus)
    if resources.concurrency != "auto":
        concurrency = resources.concurrency
    elif num_gpus:
        concurrency = max(1, int(cluster_gpus // num_gpus))
    else:
        fits = int((cluster_cpus - TASK_CPUS) // resources.cpus_per_actor)
        concurrency = max(1, min(MAX_AUTO_CPU_ACTORS, int(cluster_cpus), fits))
    reserved = concurrency * resources.cpus_per_actor
    if reserved > cluster_cpus - TASK_CPUS:
        raise JobError(
            f"{concurrency} inference actor(s) x cpus_per_actor {resources.cpus_per_actor} "
            f"would reserve {reserved:g} of the cluster's {cluster_cpus:g} CPUs, leaving none "
            f"for the read and tokenize tasks (the job would wait forever); lower "
            f"resources.concurrency or resources.cpus_per_actor")
    threads = resources.torch_threads or max(1, node_cores // concurrency)
    return Placement(num_gpus=num_gpus, concurrency=concurrency, torch_threads=threads)
