"""corpusmill's Python API: `run` a job as the CLI does, or `annotate` a DataFrame, a Hugging
Face `datasets.Dataset`, a pyarrow Table or a Ray Dataset in place.

Both go through the CLI's own path: the spec is validated into a JobSpec, `preflight` checks
input, columns and model before any Ray work, and `jobs/run.py` runs the same operators
(read -> tokenize -> infer -> postprocess). `annotate` writes the rows' input columns to a
scratch folder as Arrow (a `datasets.Dataset` backed by Arrow files is read from those files
directly), runs the job into a scratch output and joins the task's output columns back onto
the caller's object in the input's row order; a Ray Dataset instead gets the operators
appended to it and stays lazy. A job that runs on Ray (`resources.executor`; `auto` runs a
small one-task job on this machine in this process, without Ray) starts Ray once per process,
on the first call, and every later call reuses it.

Failures, and the CLI's exit status each stands for (the message is the CLI's line):

| CLI exit | Python |
|---|---|
| 0 | `run` returns a `RunResult` (`exit_code` 0) |
| 3 | `run` returns, `result.partial` is True (rows with errors, skipped, or corrupt files skipped); `result.check()` raises `PartialRun` |
| 4 | `run` returns, `result.nothing_new` is True (an incremental run found no new file) |
| 2 | `JobError`: spec, input, model or output is wrong; raised before any Ray work |
| 1 | `RowError` (a row under `on_error: raise`), `JobFailed` (anything else that failed while running; the cause is chained), `ClusterUnreachable` (`address` did not answer) |
| 130, 143 | `RunInterrupted` (a KeyboardInterrupt): committed rows are kept, `run` again resumes |
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpusmill.errors import JobError, RowError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_PARTIAL, EXIT_NOTHING_NEW = 0, 1, 2, 3, 4
STAGED = "rows.arrow"       # annotate: the staged rows of a DataFrame, Table or Dataset
# spec keys annotate sets itself: where rows come from and go to
ANNOTATE_SETS = ("input", "output", "keep_columns", "output_mode", "incremental",
                 "partition_by", "skip_corrupt_files", "id_column", "evaluate")


class JobFailed(RuntimeError):
    """The job failed while running (the CLI's exit 1); the cause is chained."""


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped (Ctrl-C, a notebook's interrupt; the CLI's exit 130 / 143). The
    rows committed so far are kept: running the same job again resumes."""


class PartialRun(RuntimeError):
    """`RunResult.check()` of a run that completed with rows errored or skipped, or corrupt
    files skipped (the CLI's exit 3)."""


# ------------------------------------------------------------------------------------ run

def run(spec, *, overrides: tuple[str, ...] | list[str] = (), incremental: bool = False,
        address: str | None = None, verbose: bool = False,
        connect_timeout: float | None = None) -> "RunResult":
    """Run a job as `corpusmill run` does and return its `RunResult`.

    `spec`: a job file's path, a mapping of spec keys (relative paths resolve against the
    working directory) or a `JobSpec`. `overrides`: `"key.sub=value"` items, as `--set`.
    `incremental`, `address`, `verbose`, `connect_timeout`: as the CLI's options. Raises as
    the module docstring says."""
    job = as_spec(spec, list(overrides) + (["incremental=true"] if incremental else []))
    return RunResult(_run_job(job, address, verbose, connect_timeout), job)


def as_spec(spec, overrides: list[str] = ()):
    """A validated JobSpec from a path, a mapping or a JobSpec, with `overrides` applied."""
    from corpusmill.spec import JobSpec, apply_override, load_spec, parse_spec

    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec, list(overrides))
    if isinstance(spec, JobSpec):
        spec = spec.model_dump(mode="json", exclude_unset=True)
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a job file's path, a mapping or a JobSpec, not "
                        f"{type(spec).__name__}")
    data = copy.deepcopy(spec)
    for item in overrides:
        apply_override(data, item)
    return parse_spec(data, base_dir=os.getcwd())


def _run_job(job, address, verbose, connect_timeout, report: bool = True):
    """run_job with the CLI's failure semantics as exceptions; Ray stays up for the next call."""
    from corpusmill.jobs.cli import resume_hint
    from corpusmill.jobs.failures import describe, user_error
    from corpusmill.jobs.cluster.ray_session import ClusterUnreachable
    from corpusmill.jobs.run import run_job

    try:
        return run_job(job, address=address, verbose=verbose, connect_timeout_s=connect_timeout,
                       keep_ray=True, report=report)
    except JobError as e:
        raise (user_error(e) or e) from None
    except KeyboardInterrupt:
        raise RunInterrupted(f"the run stopped; {resume_hint(job)}") from None
    except ClusterUnreachable:
        raise
    except Exception as e:  # noqa: BLE001 - our error behind Ray's wrapper, or the cause
        found = user_error(e)
        if isinstance(found, JobError):
            raise found from None
        if isinstance(found, RowError):
            raise RowError(f"job stopped: {found}; {resume_hint(job)}") from None
        raise JobFailed(f"job failed: {describe(e)}") from e


@dataclass(frozen=True)
class RunResult:
    """What a run did (`summary`: the counts the CLI prints) and its output, with readers."""
    summary: Any          # jobs.run.RunSummary
    spec: Any             # the JobSpec that ran

    @property
    def output(self) -> str:
        """The output folder (a path or a URI), absolute."""
        return self.summary.output

    @property
    def exit_code(self) -> int:
        """The status `corpusmill run` would have exited with."""
        if self.summary.nothing_new:
            return EXIT_NOTHING_NEW
        return EXIT_PARTIAL if self.summary.partial else EXIT_OK

    @property
    def partial(self) -> bool:
        """True when rows have errors or were skipped, or corrupt files were skipped (exit 3)."""
        return self.summary.partial

    @property
    def nothing_new(self) -> bool:
        """True when an incremental run found no new input file and did nothing (exit 4)."""
        return self.summary.nothing_new

    @property
    def log_path(self) -> str | None:
        """The run's log: everything Ray printed (`<output>/.corpusmill/logs/<run id>.log`)."""
        return self.summary.log_path

    @property
    def report(self) -> dict[str, str]:
        """The run report's files by name (report.html, report.json, metrics.json with an
        evaluate block, README.md: the dataset card)."""
        from corpusmill.jobs.stores.output import REPORT_DIR, output_filesystem

        fs, root = output_filesystem(self.output)
        import pyarrow.fs as pafs

        entries = fs.get_file_info(pafs.FileSelector(f"{root}/{REPORT_DIR}",
                                                     allow_not_found=True))
        base = self.output.rstrip("/")
        return {e.base_name: f"{base}/{REPORT_DIR}/{e.base_name}" for e in entries if e.is_file}

    @property
    def card(self) -> str | None:
        """The output's dataset card (README.md with the Hub's YAML header)."""
        return self.report.get("README.md")

    def manifest(self) -> dict | None:
        """`.corpusmill/manifest.json` of the output: job id, status, spec, counts, placement."""
        from corpusmill.jobs.stores.output import read_manifest

        return read_manifest(self.output)

    def check(self) -> "RunResult":
        """Raise PartialRun when the CLI would have exited 3; else return self."""
        if self.partial:
            raise PartialRun("; ".join(self.summary.lines()[:3]))
        return self

    def data_files(self) -> list[str]:
        """The output's Parquet files (never the checkpoint's)."""
        from corpusmill.jobs.stores.output import data_files

        _, _, files = data_files(self.output)
        return [f"{self.output.rstrip('/')}/{name}" for name in files]

    def to_arrow(self, columns: list[str] | None = None):
        """The output rows as a pyarrow Table (partition columns included)."""
        import pyarrow.dataset as pads

        from corpusmill.jobs.stores.output import data_files

        fs, root, files = data_files(self.output)
        dataset = pads.dataset([f"{root}/{name}" for name in files], filesystem=fs,
                               format="parquet", partitioning="hive" if self.spec.partition_by
                               else None, partition_base_dir=root)
        return dataset.to_table(columns=columns)

    def to_pandas(self, columns: list[str] | None = None):
        """The output rows as a pandas DataFrame."""
        return self.to_arrow(columns).to_pandas()

    def to_dataset(self):
        """The output rows as a `datasets.Dataset` (local outputs are loaded by `datasets`'
        Parquet loader, memory-mapped from its cache; others from Arrow in memory)."""
        import datasets

        if "://" in self.output or self.spec.partition_by:
            return datasets.Dataset(self.to_arrow())
        return datasets.load_dataset("parquet", data_files=self.data_files(), split="train")

    def lines(self) -> list[str]:
        """The summary lines the CLI prints after a run."""
        return self.summary.lines()

    def __repr__(self) -> str:
        return "\n".join([f"RunResult(exit_code={self.exit_code}, output={self.output!r})",
                          *self.lines()])


# ------------------------------------------------------------------------------- annotate

def annotate(data, task: str | None = None, model: str | None = None, *,
             tasks: dict | None = None, address: str | None = None, verbose: bool = False,
             connect_timeout: float | None = None, **spec_keys):
    """`data` with the task's output columns and `error` added, as the same kind of object:
    a pandas DataFrame (index kept), a pyarrow Table, a `datasets.Dataset` or `DatasetDict`
    (every split, in one run), or a Ray Dataset (returned lazy: nothing runs until it is
    consumed). Rows keep the input's order; under `on_error="skip"` rows with an error are
    left out. `tasks`: several tasks in one pass instead of `task` and `model`, as in a job
    spec ({name: {"task": ..., "model": ..., "options": ...}}): each task's columns come
    prefixed `<name>_`, then `error`. `spec_keys`: any job spec key but those annotate sets
    itself (input, output, keep_columns, output_mode, incremental, partition_by,
    skip_corrupt_files, id_column, evaluate), e.g. `columns={"text": "body"}`,
    `options={...}`, `batching={...}`, `resources={...}`, `on_error="record"`,
    `revision=...`."""
    refused = [key for key in spec_keys if key in ANNOTATE_SETS]
    if refused:
        raise JobError(f"annotate sets {', '.join(refused)} itself (rows come from `data` and "
                       f"go back to it, in order); use corpusmill.run with a job spec for "
                       f"files")
    if (task is None or model is None) if tasks is None else (task or model):
        raise JobError("annotate takes a task and a model (annotate(data, 'text-classification'"
                       ", MODEL)), or several tasks (annotate(data, tasks={'sentiment': "
                       "{'task': ..., 'model': ...}}))")
    kind = _kind_of(data)
    spec_data = ({"tasks": copy.deepcopy(tasks)} if tasks is not None
                 else {"task": task, "model": model})
    spec_data.update(copy.deepcopy(spec_keys))
    if kind == "ray":
        return _annotate_ray(data, spec_data, address, connect_timeout)
    wanted = _input_columns(spec_data)
    what = task or ", ".join(block.get("task", "?") for block in tasks.values())
    with tempfile.TemporaryDirectory(prefix="corpusmill-annotate-") as scratch:
        parts = _stage(data, kind, Path(scratch) / "input", wanted, what)
        job = as_spec({**spec_data, "input": str(Path(scratch) / "input"),
                       "output": str(Path(scratch) / "output"), "keep_columns": [],
                       "output_mode": "overwrite"})
        try:
            summary = _run_job(job, address, verbose, connect_timeout, report=False)
        except RunInterrupted:
            raise RunInterrupted("annotate stopped; nothing was kept") from None
        result = RunResult(summary, job)
        outputs = result.to_arrow()
    return _attach(data, kind, parts, outputs, job)


def _input_columns(spec_data: dict) -> list[str]:
    """The columns of `data` the task(s) read, as the spec maps them."""
    from corpusmill.pipelines.registry import UnknownTask, get_task

    blocks = (list(spec_data["tasks"].values()) if spec_data.get("tasks")
              else [spec_data])
    wanted = []
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("task"), str):
            continue  # the spec's own validation names what is wrong
        try:
            inputs = get_task(block.get("task")).input_columns
        except UnknownTask as e:
            raise JobError(str(e)) from None
        mapping = block.get("columns") or spec_data.get("columns") or {}
        wanted += [mapping.get(name, name) for name in inputs]
    return list(dict.fromkeys(wanted))


def _kind_of(data) -> str:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return "arrow"
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return "pandas"
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(data, datasets.Dataset):
        return "dataset"
    if datasets is not None and isinstance(data, datasets.DatasetDict):
        return "dataset_dict"
    ray_data = sys.modules.get("ray.data")
    if ray_data is not None and isinstance(data, ray_data.Dataset):
        return "ray"
    raise TypeError(f"annotate takes a pandas DataFrame, a pyarrow Table, a datasets.Dataset or "
                    f"DatasetDict, or a Ray Dataset, not {type(data).__module__}."
                    f"{type(data).__name__}; for files, use corpusmill.run with a job spec")


@dataclass(frozen=True)
class _Part:
    """Staged rows of one object (a split, for a DatasetDict): file name -> first row."""
    split: str | None
    offsets: dict[str, int]
    rows: int


def _stage(data, kind: str, folder: Path, columns: list[str], task: str) -> list[_Part]:
    """Write the input columns of `data` under `folder` as Arrow IPC files (a Dataset backed
    by unmodified Arrow files is linked, not copied)."""
    folder.mkdir(parents=True)
    if kind == "dataset_dict":
        return [_stage_one(split, data[split], "dataset", folder / split, columns, task,
                           prefix=f"{split}/") for split in data]
    return [_stage_one(None, data, kind, folder, columns, task)]


def _stage_one(split, data, kind, folder: Path, columns, task, prefix: str = "") -> _Part:
    import pyarrow as pa

    folder.mkdir(parents=True, exist_ok=True)
    present = list(data.column_names if kind != "pandas" else map(str, data.columns))
    _check_columns(present, columns, task, split)
    if kind == "dataset":
        linked = _link_arrow_files(data, folder)
        if linked is not None:
            return _Part(split, {prefix + k: v for k, v in linked.items()}, len(data))
        rows = data.with_format("arrow")
        batches = (batch for table in rows.iter(batch_size=1024)
                   for batch in table.select(columns).to_batches())
        schema = rows[:0].select(columns).schema
    else:
        if kind == "pandas":
            try:
                table = pa.Table.from_pandas(data[columns], preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise JobError(f"DataFrame column(s) {', '.join(map(repr, columns))} do not "
                               f"convert to Arrow text ({e}); they must hold str (or None)") from None
        else:
            table = data.select(columns)
        batches, schema = table.to_batches(max_chunksize=1024), table.schema
    with pa.OSFile(str(folder / STAGED), "wb") as sink, pa.ipc.new_stream(sink, schema) as out:
        for batch in batches:
            out.write_batch(batch)
    return _Part(split, {prefix + STAGED: 0}, len(data))


def _check_columns(present: list[str], columns: list[str], task: str, split) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        where = f"split {split!r}" if split else "the data"
        raise JobError(f"column(s) {', '.join(map(repr, missing))} ({task} input) not in "
                       f"{where}; columns present: {', '.join(present)}; map the task input "
                       f"to a column with columns={{'text': '<column>'}}")


def _link_arrow_files(data, folder: Path) -> dict[str, int] | None:
    """A Dataset whose rows are exactly its Arrow cache files' (no indices mapping, no
    in-memory part, no column edits or slices pending): symlink the files and return
    name -> first row; None for any other Dataset."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    table = data.data
    if getattr(data, "_indices", None) is not None:
        return None
    if isinstance(table, ConcatenationTable):
        if any(len(row) != 1 for row in table.blocks):
            return None  # datasets concatenated along columns
        blocks = [row[0] for row in table.blocks]
    else:
        blocks = [table]
    if not blocks or not all(isinstance(b, MemoryMappedTable) and not b.replays
                             for b in blocks):
        return None
    offsets, first = {}, 0
    for i, block in enumerate(blocks):
        name = f"part-{i:05d}.arrow"
        os.symlink(block.path, folder / name)
        offsets[name] = first
        first += block.num_rows
    return offsets


def _attach(data, kind: str, parts: list[_Part], outputs, job):
    """The output columns joined back onto `data`, in its row order."""
    import numpy as np

    from corpusmill.operators.readers.files import GENERATED_ID

    names = [f.name for f in outputs.schema if f.name != GENERATED_ID]
    where = {name: (k, first) for k, part in enumerate(parts)
             for name, first in part.offsets.items()}
    part_of, position = [], []
    for row_id in outputs.column(GENERATED_ID).to_pylist():
        name, _, row = row_id.rpartition(":")
        k, first = where[name]
        part_of.append(k)
        position.append(first + int(row))
    part_of, position = np.asarray(part_of, dtype=np.int64), np.asarray(position, dtype=np.int64)
    results = []
    for k, part in enumerate(parts):
        mine = np.flatnonzero(part_of == k)
        mine = mine[np.argsort(position[mine], kind="stable")]
        rows = position[mine]
        columns = outputs.select(names).take(mine)
        source = data[part.split] if part.split is not None else data
        results.append(_join(source, kind if part.split is None else "dataset", rows,
                             columns, complete=len(rows) == part.rows))
    if kind == "dataset_dict":
        import datasets

        return datasets.DatasetDict({p.split: r for p, r in zip(parts, results)})
    return results[0]


def _join(data, kind: str, rows, columns, complete: bool):
    if kind == "pandas":
        base = data if complete else data.iloc[rows]
        added = {name: columns.column(name).to_pandas().set_axis(base.index)
                 for name in columns.column_names}
        return base.assign(**added)
    if kind == "arrow":
        base = data if complete else data.take(rows)
        for name in columns.column_names:
            base = base.append_column(columns.schema.field(name), columns.column(name))
        return base
    import datasets

    base = data if complete else data.select(rows)
    return datasets.concatenate_datasets([base, datasets.Dataset(columns)], axis=1)


def _annotate_ray(ds, spec_data: dict, address, connect_timeout):
    """The Ray Dataset with the operators appended: lazy, rows in the input's order."""
    import uuid
    import warnings

    import pyarrow as pa

    from corpusmill.jobs.stores.corpus import Corpus
    from corpusmill.jobs.cluster.placement import TASK_CPUS
    from corpusmill.jobs.preflight import preflight, preflight_several
    from corpusmill.jobs.cluster.ray_session import ensure_ray
    from corpusmill.jobs.run import process_rows, process_several, settle
    from corpusmill.operators.readers.ray_input import conform_batch
    from corpusmill.operators.readers.files import GENERATED_ID, CorpusFile

    schema = ds.schema()
    arrow_schema = getattr(schema, "base_schema", schema)
    if not isinstance(arrow_schema, pa.Schema):
        arrow_schema = pa.schema(list(zip(schema.names, schema.types)))
    # a spec for the checks: the rows are the dataset's, nothing is written
    job = as_spec({**spec_data, "input": "ray://dataset", "output": os.path.join(
        tempfile.gettempdir(), "corpusmill-annotate-ray")})
    rows = Corpus(fs=None, files=[CorpusFile("", "the Ray Dataset", (), arrow_schema, 0,
                                             format="ray")])
    plan, _ = (preflight_several if job.several else preflight)(job, corpus=rows)
    ensure_ray(address, connect_timeout)
    plan, _ = settle(plan, None, reserved_cpus=0, run_id=uuid.uuid4().hex[:12], corpus=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        out = ds.map_batches(conform_batch, fn_kwargs={"schema": plan.read_schema,
                                                       "generate_ids": True},
                             batch_format="pyarrow", batch_size=None, num_cpus=TASK_CPUS)
        out = (process_several if job.several else process_rows)(plan, out)
        out = out.drop_columns([GENERATED_ID])
    out.context.execution_options.preserve_order = True
    return out
