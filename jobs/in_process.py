"""Running a job in this process, without Ray (`resources.executor: process`).

A job on this machine pays for Ray before its first row: Ray's own processes start (~4 s on 2
cores), worker processes start and import torch, an inference actor loads the model, and each
block crosses process boundaries on its way to the sink. For a small job, or on a machine of a
few cores where one process's torch threads already use every core, that is most of the run
(the README demo: 320 rows, ~29 s whole process, ~5 s of it the model). Here the same
operators run one block after another in the command's own process: the reader's blocks
(operators/readers/read.py `read_row_group`), one `Infer` (tokenizing in it, torch using every
core), `postprocess_batch`, and a Parquet file per block.

Exactly once, as on Ray, with Ray Data's own two-phase commit (the same `CheckpointWriter`, the
same file names in `.corpusmill/checkpoint/`): per block, the ids go to a pending checkpoint,
then the data file is written, then the checkpoint is committed by a rename. A run stopped
anywhere leaves committed blocks whole and at most one pending one, whose data file the next run
deletes (this module's `clean_pending`, or Ray Data's own cleanup); the next run resumes on Ray,
whose checkpoint filter skips the committed rows. Statistics go to a `RunStats` in this process
instead of the stats actor (operators/stats.py `local_stats`), so the progress line, the
manifest and the report read the same figures.

`choose_executor` settles `auto` (see `Resources.executor`)."""
from __future__ import annotations

import dataclasses
import os
import posixpath
import socket
import threading
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from corpusmill.errors import JobError
from corpusmill.jobs.cluster.placement import Placement
from corpusmill.jobs.stores.output import CHECKPOINT_DIR, output_filesystem
from corpusmill.operators.plan import JobPlan, SeveralPlan
from corpusmill.operators.stats import RunStats, local_stats, node_id, stats_name

RAY, PROCESS = "ray", "process"
# `auto` runs in this process on machines of at most this many cores (one process's torch
# threads use them all; Ray's actor pool adds processes, not compute), and elsewhere for jobs of
# at most this many rows (Ray's start-up would be most of their time)
PROCESS_MAX_CORES = 4
PROCESS_MAX_ROWS = 20_000
PENDING_SUFFIX = ".pending.parquet"


@dataclass(frozen=True)
class Executor:
    kind: str    # RAY or PROCESS
    reason: str  # one line: why


def choose_executor(spec, address: str | None, rows: int, rows_before: int) -> Executor:
    """Where the job runs: `resources.executor` as set, or for `auto` this process when every
    condition holds: no cluster (no `--address`, RAY_ADDRESS unset or `local`, this process not
    already connected to Ray), one task, no GPU asked for (`num_gpus` 0, or `auto` with no GPU
    here), nothing to resume (an earlier run's committed rows are skipped by Ray Data's
    checkpoint filter), and a small machine or a small job (PROCESS_MAX_CORES,
    PROCESS_MAX_ROWS). `rows`: the rows this run has to process."""
    choice = spec.resources.executor if not spec.several else _several_choice(spec)
    cluster = _cluster_named(address)
    if choice == PROCESS:
        if cluster:
            raise JobError(f"resources.executor: process runs the job in this process, but a "
                           f"Ray cluster is named ({cluster}); unset it, or use executor: ray "
                           f"(or auto)")
        if rows_before:
            return Executor(RAY, f"an earlier run committed {rows_before:,} rows, which Ray "
                                 f"Data's checkpoint filter skips (executor: process runs fresh "
                                 f"work only)")
        return Executor(PROCESS, "executor: process")
    if choice == RAY:
        return Executor(RAY, "executor: ray")
    if cluster:
        return Executor(RAY, f"a cluster is named ({cluster})")
    if _ray_connected():
        return Executor(RAY, "this process is connected to Ray already")
    if spec.several:
        return Executor(RAY, "a job with several tasks runs an actor pool per task")
    if rows_before:
        return Executor(RAY, f"resuming ({rows_before:,} rows committed earlier)")
    if spec.resources.num_gpus not in (0, 0.0, "auto"):
        return Executor(RAY, "GPUs are asked for (resources.num_gpus)")
    cores = os.cpu_count() or 1
    if cores > PROCESS_MAX_CORES and rows > PROCESS_MAX_ROWS:
        return Executor(RAY, f"{rows:,} rows on {cores} cores: an actor pool")
    if spec.resources.num_gpus == "auto" and _gpu_here():
        return Executor(RAY, "this machine has a GPU (num_gpus: auto)")
    size = (f"{cores} cores" if cores <= PROCESS_MAX_CORES else f"{rows:,} rows")
    return Executor(PROCESS, f"executor auto: {size}, no cluster, no GPU; executor: "
                             f"ray runs it on a local Ray")


def _several_choice(spec) -> str:
    chosen = {one.resources.executor for one in spec.task_specs().values()}
    if PROCESS in chosen:
        raise JobError("resources.executor: process runs one task; a job with several tasks "
                       "runs on Ray (an actor pool per task): use executor: ray or auto")
    return RAY if RAY in chosen else "auto"


def _cluster_named(address: str | None) -> str | None:
    """The cluster address this run would join, or None for this machine."""
    named = address if address is not None else os.environ.get("RAY_ADDRESS", "")
    return named.strip() if named.strip() not in ("", "local") else None


def _ray_connected() -> bool:
    """This process already runs Ray (the Python API's session, a test's): auto uses it."""
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _gpu_here() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no usable torch: no GPU for us
        return False


def settle_in_process(plan: JobPlan, corpus, run_id: str) -> tuple[JobPlan, Placement]:
    """The plan for this process: one 'actor' (this process) on CPU, tokenizing in it, torch
    threads on every core (or `resources.torch_threads`), the backend settled as on Ray."""
    from corpusmill.operators.engines import prepare_backend

    if isinstance(plan, SeveralPlan):  # choose_executor never sends one here
        raise JobError("a job with several tasks runs on Ray")
    threads = plan.spec.resources.torch_threads or (os.cpu_count() or 1)
    plan = dataclasses.replace(plan, num_gpus=0.0, min_actors=1, max_actors=1,
                               torch_threads=threads, run_id=run_id,
                               stats_name=stats_name(run_id), tokenize_in_actor=True)
    plan = prepare_backend(plan, corpus)
    placement = Placement(num_gpus=0.0, min_actors=1, max_actors=1, torch_threads=threads,
                          reason=f"in this process: {threads} torch thread(s)",
                          single_node=True)
    return plan, placement


def node_table() -> list[dict]:
    """This machine as the one node of the run (the manifest's placement names its host)."""
    return [{"NodeID": node_id(), "NodeManagerAddress": socket.gethostname(),
             "Resources": {"CPU": float(os.cpu_count() or 1)}}]


class _LockedStats(RunStats):
    """The run's statistics in this process, read by the progress thread while blocks add."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def add(self, *args, **kwargs) -> None:
        with self._lock:
            super().add(*args, **kwargs)

    def actor_ready(self, *args, **kwargs) -> None:
        with self._lock:
            super().actor_ready(*args, **kwargs)

    def skipped_corrupt(self, *args, **kwargs) -> None:
        with self._lock:
            super().skipped_corrupt(*args, **kwargs)

    def snapshot(self) -> dict:
        with self._lock:
            return super().snapshot()


def execute_in_process(plan: JobPlan, corpus, display_factory) -> tuple[dict, list]:
    """Read, infer, postprocess and write every block of `corpus` here; the run's statistics
    snapshot and throughput timeline, as `_execute` on Ray returns them. `display_factory`:
    makes the progress watcher from a snapshot function (jobs/run.py)."""
    from corpusmill.operators.infer import Infer
    from corpusmill.operators.postprocess import postprocess_batch
    from corpusmill.operators.readers.read import CorpusDatasource

    if not corpus.num_rows:
        return {}, []
    spec = plan.spec
    stats = _LockedStats()
    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema, spec.id_column,
                              rows_per_block=spec.batching.window_rows,
                              stats_name=plan.stats_name, skip_corrupt=spec.skip_corrupt_files)
    sink = BlockSink(spec.output, plan.id_column, spec.partition_by or [], plan.run_id)
    with local_stats(plan.stats_name, stats), display_factory(stats.snapshot) as watcher:
        sink.clean_pending()
        infer = Infer(plan)  # tokenizes in it (settle_in_process)
        for block in source.blocks():
            sink.write(postprocess_batch(infer(block), plan))
    return watcher.snapshot, watcher.timeline


class BlockSink:
    """Writes output blocks as Ray Data's checkpointed Parquet sink does: per block a pending
    checkpoint of its ids, the data file (`<base>-<i>.parquet`, in `key=value/` folders when
    partitioned), then the checkpoint committed (renamed)."""

    def __init__(self, output: str, id_column: str, partition_by: list[str], run_id: str):
        from ray.data.checkpoint import CheckpointConfig
        from ray.data.checkpoint.checkpoint_writer import CheckpointWriter

        self.fs, self.root = output_filesystem(output)
        self.id_column = id_column
        self.partition_by = partition_by
        self.run_id = run_id
        self.blocks = 0
        from corpusmill.jobs.stores.output import checkpoint_path

        self.checkpoints = CheckpointWriter.create(CheckpointConfig(
            id_column=id_column, checkpoint_path=checkpoint_path(output),
            delete_checkpoint_on_success=False))

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:  # every row left out (on_error: skip): nothing to commit
            return
        base = f"{self.run_id}_{self.blocks:09d}"
        self.blocks += 1
        pending = self.checkpoints.write_pending_checkpoint(table.column(self.id_column),
                                                            checkpoint_id=base)
        self._write_data(table, base)
        self.checkpoints.commit_checkpoint(pending)

    def _write_data(self, table: pa.Table, base: str) -> None:
        import pyarrow.dataset as pads
        import pyarrow.parquet as pq

        self.fs.create_dir(self.root, recursive=True)
        if not self.partition_by:
            pq.write_table(table, f"{self.root}/{base}-0.parquet", filesystem=self.fs)
            return
        pads.write_dataset(table, self.root, format="parquet", filesystem=self.fs,
                           partitioning=self.partition_by, partitioning_flavor="hive",
                           basename_template=f"{base}-{{i}}.parquet",
                           existing_data_behavior="overwrite_or_ignore")

    def clean_pending(self) -> int:
        """What a stopped run left half-done: the data files of each pending checkpoint (their
        names start with its name), then the pending checkpoints; as Ray Data's own cleanup."""
        folder = f"{self.root}/{CHECKPOINT_DIR}"
        pending = [entry for entry in self.fs.get_file_info(pafs.FileSelector(
            folder, allow_not_found=True)) if entry.base_name.endswith(PENDING_SUFFIX)]
        if not pending:
            return 0
        prefixes = tuple(entry.base_name[:-len(PENDING_SUFFIX)] for entry in pending)
        for entry in self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True,
                                                             allow_not_found=True)):
            if (entry.type == pafs.FileType.File and not entry.path.startswith(folder)
                    and posixpath.basename(entry.path).startswith(prefixes)):
                self.fs.delete_file(entry.path)
        for entry in pending:
            self.fs.delete_file(entry.path)
        return len(pending)
