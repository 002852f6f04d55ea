"""Running a job in this process, without Ray (`resources.executor: process`).

A job on this machine pays for Ray before its first row: Ray's own processes start (~4 s on 2
cores), worker processes start and import torch, an inference actor loads the model, and each
block crosses process boundaries on its way to the sink. For a small job, or on a machine of a
few cores where one process's torch threads already use every core, that is most of the run
(the README demo: 320 rows, ~29 s whole process, ~5 s of it the model). Here the same
operators run in the command's own process, importing no Ray: the reader's blocks
(operators/readers/files.py `read_fragments`), tokenized one block ahead in a thread
(`TokenizedAhead`) while one `Infer` runs the model with torch on the cores (`ThreadBalance`
gives the tokenizer a core of its own when it costs as much as the model), then
`postprocess_batch` and a Parquet file per block.

Exactly once, as on Ray, with Ray Data's two-phase commit and its file layout in
`.corpusmill/checkpoint/` (`BlockSink`): per block, the ids go to a pending checkpoint
`<base>.pending.parquet`, then the data file `<base>-0.parquet` is written, then the checkpoint
is committed by a rename to `<base>.parquet`. A run stopped anywhere leaves committed blocks
whole and at most one pending one, whose data file the next run deletes (`clean_pending` here,
or Ray Data's own cleanup); the next run resumes on Ray, whose checkpoint filter skips the
committed rows. Statistics go to a `RunStats` in this process instead of the stats actor
(operators/stats.py `local_stats`), so the progress line, the manifest and the report read the
same figures.

`choose_executor` settles `auto` (see `Resources.executor`)."""
from __future__ import annotations

import dataclasses
import logging
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

log = logging.getLogger(__name__)

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
    """A job with several tasks runs on Ray (the spec refuses `process` for one)."""
    chosen = {one.resources.executor for one in spec.task_specs().values()}
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


def execute_in_process(plan: JobPlan, corpus, display_factory) -> tuple[dict, list, int]:
    """Read, infer, postprocess and write every block of `corpus` here; the run's statistics
    snapshot and throughput timeline, as `_execute` on Ray returns them, and the torch threads
    the model ran on at the end. `display_factory`: makes the progress watcher from a snapshot
    function (jobs/run.py)."""
    from corpusmill.operators.infer import Infer
    from corpusmill.operators.postprocess import postprocess_batch
    from corpusmill.operators.readers.files import fragments_of, read_fragments
    from corpusmill.operators.stats import Timer

    if not corpus.num_rows:
        return {}, [], plan.torch_threads
    spec = plan.spec
    stats = _LockedStats()
    blocks = read_fragments(corpus.fs, fragments_of(corpus.files), plan.read_schema,
                            spec.id_column, spec.batching.window_rows,
                            skip_corrupt=spec.skip_corrupt_files, stats_name=plan.stats_name)
    sink = BlockSink(spec.output, plan.id_column, spec.partition_by or [], plan.run_id)
    # one tokenizer thread beside the model: the Rust tokenizer's own pool would contend with it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with local_stats(plan.stats_name, stats), display_factory(stats.snapshot) as watcher:
        sink.clean_pending()
        infer = Infer(plan)
        balance = ThreadBalance(infer, plan.torch_threads)

        def encode(block):
            with Timer() as timer:
                encoded = infer.encode(block)
            return encoded, timer.seconds

        with TokenizedAhead(regrouped(blocks, spec), encode) as encoded_blocks:
            for encoded, tokenize_seconds in encoded_blocks:
                out = infer.run(encoded.table, encoded.windows)
                balance.after_block(tokenize_seconds, infer.seconds)
                sink.write(postprocess_batch(out, plan))
    return watcher.snapshot, watcher.timeline, balance.threads


# Later blocks in this process hold this many rows unless `batching.window_rows` is set: the
# model's batches are sorted by length within a block, and a bigger window pads less (MiniLM,
# 10,000 rows: 95% of the computed tokens were real with 1,024-row blocks, 99% sorted whole).
# The first block keeps window_rows, so the first rows are written as soon as on Ray.
PROCESS_WINDOW_ROWS = 4096


def regrouped(blocks, spec):
    """The reader's blocks, the first as it is, the later ones joined up to PROCESS_WINDOW_ROWS
    rows (or left as they are when the spec sets `batching.window_rows`)."""
    if "window_rows" in spec.batching.model_fields_set:
        yield from blocks
        return
    target = max(PROCESS_WINDOW_ROWS, spec.batching.window_rows)
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        return
    yield first
    held, rows = [], 0
    for block in blocks:
        held.append(block)
        rows += block.num_rows
        if rows >= target:
            yield pa.concat_tables(held)
            held, rows = [], 0
    if held:
        yield pa.concat_tables(held)


class ThreadBalance:
    """How many torch threads the model gets beside the tokenizer's thread. It starts on every
    core the plan gives it; after blocks 2 and 3, when tokenizing a block takes at least half
    as long as the model's forward passes over it (a small model: the tokenizer is half the
    work), the model gives up one core, so that the tokenizer and the model run side by side
    instead of contending. Measured on 2 cores, 50,000 rows, a 2-layer BERT: 21.2 s against
    24.3 s with the tokenizer and model in turn, 27.2 s with both on 2 cores. onnxruntime sets
    its threads once: left as it is."""

    SKIP = 1         # the first block is not measured: torch's first calls warm up (a second
                     # or so, which once tipped the choice the wrong way: 93 s against 61 s)
    BLOCKS = 2       # blocks measured before deciding
    SHARE = 0.5      # tokenize seconds / model seconds at or above which the model gives a core

    def __init__(self, infer, threads: int):
        self.infer = infer
        self.threads = threads
        self.tokenize_s = self.model_s = 0.0
        self.blocks = 0

    def after_block(self, tokenize_seconds: float, model_seconds: float) -> None:
        self.blocks += 1
        if self.blocks <= self.SKIP:
            return
        self.tokenize_s += tokenize_seconds
        self.model_s += model_seconds
        if self.blocks != self.SKIP + self.BLOCKS or self.threads <= 1:
            return
        if getattr(self.infer.engine, "name", "") != "torch":
            return
        if self.tokenize_s >= self.SHARE * self.model_s:
            import torch

            self.threads -= 1
            torch.set_num_threads(self.threads)
            log.info("in this process: tokenizing took %.2f s against the model's %.2f s over "
                     "%d blocks: the model runs on %d thread(s), the tokenizer on its own",
                     self.tokenize_s, self.model_s, self.BLOCKS, self.threads)


class TokenizedAhead:
    """The blocks read and tokenized one step ahead, in a thread, while the caller's thread
    runs the model on the block before: the Rust tokenizer, the Parquet reads and torch's
    kernels all release the GIL, so the tokenizer's time and the model's overlap instead of
    adding up. An error in the thread (a row under `on_error: raise`, a damaged row group) is
    raised in the caller's thread, in block order; leaving the `with` early (an error,
    Ctrl-C) stops the thread."""

    END = object()

    def __init__(self, blocks, encode, ahead: int = 2):
        import queue

        self.blocks, self.encode = blocks, encode
        self.queue = queue.Queue(maxsize=ahead)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="corpusmill-tokenize",
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self._consume()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _consume(self):
        while True:
            item = self.queue.get()
            if item is self.END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _produce(self) -> None:
        try:
            for block in self.blocks:
                if not self._put(self.encode(block)):
                    return
            self._put(self.END)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self._put(e)

    def _put(self, item) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


class BlockSink:
    """Writes output blocks as Ray Data's checkpointed Parquet sink does: per block a pending
    checkpoint of its ids, the data file (`<base>-<i>.parquet`, in `key=value/` folders when
    partitioned), then the checkpoint committed (renamed)."""

    def __init__(self, output: str, id_column: str, partition_by: list[str], run_id: str):
        self.fs, self.root = output_filesystem(output)
        self.checkpoints = f"{self.root}/{CHECKPOINT_DIR}"
        self.id_column = id_column
        self.partition_by = partition_by
        self.run_id = run_id
        self.blocks = 0
        self._folders_made = False

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:  # every row left out (on_error: skip): nothing to commit
            return
        base = f"{self.run_id}_{self.blocks:09d}"
        self.blocks += 1
        pending = self.write_pending(table.column(self.id_column), base)
        self._write_data(table, base)
        self.fs.move(pending, f"{self.checkpoints}/{base}.parquet")  # the commit

    def write_pending(self, ids, base: str) -> str:
        """The block's ids as Ray Data's pending checkpoint `<base>.pending.parquet` (one
        column, named as the id column: what its checkpoint filter reads once committed)."""
        import pyarrow.parquet as pq

        if not self._folders_made:  # once, not per block (a request each on object storage)
            self.fs.create_dir(self.checkpoints, recursive=True)
            self._folders_made = True
        path = f"{self.checkpoints}/{base}{PENDING_SUFFIX}"
        pq.write_table(pa.table({self.id_column: ids}), path, filesystem=self.fs)
        return path

    def _write_data(self, table: pa.Table, base: str) -> None:
        import pyarrow.dataset as pads
        import pyarrow.parquet as pq

        if not self._folders_made:  # the checkpoint folder made is inside the root
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
