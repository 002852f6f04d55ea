"""The output folder, as the driver sees it (Ray Data's sink writes the data files): deciding
what to do with what it holds (refuse, resume, replace), and what was written for the summary:
counts from the data files' footers, and the duplicate-id check streamed through hash
partitions on local disk (jobs/stores/ids.py), so the driver never holds every id. `OutputFolder` is
the one object run_job talks to.

Layout: the data files (`*.parquet`, in `key=value/` folders when partitioned), each with the
job's provenance in its schema metadata, and one hidden folder, `.corpusmill/`, for the rest:
`manifest.json` (job id, status, spec, the fingerprints of the input files runs read, the last
run's counts, placement and statistics), `files.json` (the incremental ledger, jobs/stores/ledger.py),
`lock` while a run writes (jobs/stores/lock.py), `checkpoint/` (Ray Data's record of committed row
ids, which a rerun uses to resume), `logs/` (jobs/console.py) and `report/` (jobs/reporting/report.py:
report.html, report.json, metrics.json, and the dataset card README.md). Hidden, so every
reader of a Parquet folder sees only the data: `pandas.read_parquet(OUTPUT)`,
`datasets.load_dataset("parquet", data_dir=OUTPUT)`, pyarrow datasets skip names starting with
`.`. Outputs written by earlier versions (`_corpusmill.json`, `_checkpoint/`, ... at the top)
are moved into `.corpusmill/` by the first run that finds them (`migrate_legacy_layout`)."""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from corpusmill.errors import JobError, storage_error
from corpusmill.pipelines.base import INPUT_TRUNCATED
from corpusmill.operators.plan import ERROR

STATE_DIR = ".corpusmill"                     # everything but the data files
MANIFEST = f"{STATE_DIR}/manifest.json"
LEDGER = f"{STATE_DIR}/files.json"             # incremental runs (jobs/stores/ledger.py)
LOCK = f"{STATE_DIR}/lock"                     # held by a running run (jobs/stores/lock.py)
CHECKPOINT_DIR = f"{STATE_DIR}/checkpoint"     # Ray Data's committed row ids
LOG_DIR = f"{STATE_DIR}/logs"                  # Ray's output of each run (jobs/console.py)
REPORT_DIR = f"{STATE_DIR}/report"             # the run report and the dataset card
# what a run may leave in the state folder without the folder holding output: the lock of a
# run starting now, the logs of runs refused before writing anything
NOT_OUTPUT = (LOCK, LOG_DIR)
# the layout of earlier versions, where each of these now lives
LEGACY_LAYOUT = {"_corpusmill.json": MANIFEST, "_corpusmill_files.json": LEDGER,
                 "_checkpoint": CHECKPOINT_DIR, "_logs": LOG_DIR, "_report": REPORT_DIR}


def output_filesystem(output: str) -> tuple[pafs.FileSystem, str]:
    if "://" in output:
        return pafs.FileSystem.from_uri(output)
    return pafs.LocalFileSystem(), os.path.abspath(output)


@dataclass(frozen=True)
class OutputState:
    resumed: bool          # the folder held an unfinished or finished run of this same job
    rows_before: int       # rows already written there before this run
    replace: bool = False  # overwrite: corpusmill's earlier files are to be deleted


def check_output(output: str, mode: str, job_id: str,
                 identity: dict | None = None) -> OutputState:
    """Decide what to do with an existing output folder, before any Ray work. Changes nothing:
    `replace_output` deletes, once the job is known to be runnable.

    resume:    an empty folder starts afresh; one holding this job's output (same job id in the
               manifest) is continued; anything else is refused.
    overwrite: corpusmill's own files are to be deleted (a folder holding others is refused).
    error:     any existing file is refused."""
    fs, root = output_filesystem(output)
    try:
        info = fs.get_file_info(root)
    except OSError as e:
        raise storage_error(output, e, "list") or JobError(
            f"output {output!r} cannot be read: {e}") from None
    if info.type == pafs.FileType.NotFound:
        return OutputState(False, 0)
    if info.type != pafs.FileType.Directory:
        raise JobError(f"output {output!r} exists and is not a folder")
    # the state folder alone (a lock, or a refused run's logs) is no output yet; a manifest is
    entries = [e for e in fs.get_file_info(pafs.FileSelector(root)) if e.base_name != STATE_DIR]
    manifest = read_manifest(output)
    if not entries and manifest is None:
        return OutputState(False, 0)
    if mode == "error":
        held = f"{len(entries)} file(s)" if entries else "a corpusmill job's state"
        raise JobError(f"output folder {output!r} already holds {held}; choose an empty "
                       f"folder, or set output_mode: overwrite (or --set "
                       f"output_mode=overwrite) to replace them")
    foreign = sorted(e.base_name for e in entries if not _ours(e))
    if mode == "overwrite":
        if foreign:
            raise JobError(f"output folder {output!r} holds files corpusmill did not write "
                           f"({', '.join(foreign[:5])}); refusing to overwrite it")
        return OutputState(False, 0, replace=True)
    if manifest is None or foreign:
        raise JobError(f"output folder {output!r} holds files that are not a corpusmill job's "
                       f"output ({', '.join((foreign or [e.base_name for e in entries])[:5])}); "
                       f"choose an empty folder")
    if manifest.get("job_id") != job_id:
        made = manifest.get("provenance", {})
        differs = _differences(manifest, identity)
        what = (f"this job ({job_id}) differs in {'; '.join(differs[:6])}" if differs else
                f"this job ({job_id}) computes something else")
        raise JobError(f"output folder {output!r} holds the output of another job (job "
                       f"{manifest.get('job_id')}: {_made_by(made)}); "
                       f"{what}. Rerun with the settings the output was made with, choose "
                       f"another output folder, or set output_mode: overwrite to replace it")
    return OutputState(True, committed_rows(output))


PROBE = "_corpusmill_probe_"


def _made_by(provenance: dict) -> str:
    """'TASK with MODEL', or the tasks of a job with several, from an output's provenance."""
    tasks = provenance.get("tasks")
    if tasks:
        return "tasks " + ", ".join(f"{name} ({t.get('task')} with {t.get('model')})"
                                    for name, t in tasks.items())
    return f"{provenance.get('task')} with {provenance.get('model')}"


def check_writable(output: str) -> None:
    """On object storage, write and delete a small object in the output folder, so a missing
    bucket, refused credentials or a read-only grant stop the job before any work (a local
    folder is checked by the lock's exclusive create)."""
    if "://" not in output:
        return
    fs, root = output_filesystem(output)
    probe = f"{root}/{PROBE}{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(probe) as f:
            f.write(b"corpusmill write check")
        fs.delete_file(probe)
    except OSError as e:
        raise storage_error(output, e, "write") or JobError(
            f"output {output!r} is not writable: {e}") from None


def _differences(manifest: dict, identity: dict | None) -> list[str]:
    """The settings this job changes against the job whose output the folder holds."""
    if identity is None or not isinstance(manifest.get("spec"), dict):
        return []
    from corpusmill.spec import JobSpec, identity_differences

    try:
        before = JobSpec(**manifest["spec"]).identity
    except Exception:  # noqa: BLE001 - an older or foreign spec: no itemised difference
        return []
    return identity_differences(before, identity)


def replace_output(output: str) -> None:
    """Delete corpusmill's files from the output folder (`check_output` has made sure they are
    all corpusmill's), except the lock this run holds and the runs' logs (this run's is being
    written)."""
    fs, root = output_filesystem(output)
    keep = {f"{root}/{name}" for name in NOT_OUTPUT}
    for entry in fs.get_file_info(pafs.FileSelector(root)):
        if entry.base_name == STATE_DIR:
            for inner in fs.get_file_info(pafs.FileSelector(entry.path)):
                if inner.path not in keep:
                    _delete(fs, inner)
        else:
            _delete(fs, entry)


def _delete(fs: pafs.FileSystem, entry: pafs.FileInfo) -> None:
    if entry.type == pafs.FileType.Directory:
        fs.delete_dir(entry.path)
    else:
        fs.delete_file(entry.path)


def _ours(entry: pafs.FileInfo) -> bool:
    """What corpusmill writes at the top of an output folder: data files, partition folders
    (`key=value`), its state folder, and the files and folders of earlier versions' layout."""
    if entry.type == pafs.FileType.Directory:
        return (entry.base_name in (STATE_DIR, *LEGACY_LAYOUT) or "=" in entry.base_name)
    return entry.type == pafs.FileType.File and (
        entry.base_name.endswith(".parquet") or entry.base_name.startswith("_corpusmill"))


def migrate_legacy_layout(output: str) -> list[str]:
    """Move an output written by an earlier version (`_corpusmill.json`, `_checkpoint/`, ... at
    the top) into `.corpusmill/`, so runs, resumes and incremental runs go on where it stopped.
    Returns what was moved. Nothing to do for new outputs."""
    fs, root = output_filesystem(output)
    if fs.get_file_info(f"{root}/_corpusmill.json").type == pafs.FileType.NotFound:
        return []
    moved = []
    for old, new in LEGACY_LAYOUT.items():
        source = fs.get_file_info(f"{root}/{old}")
        if source.type == pafs.FileType.NotFound:
            continue
        fs.create_dir(f"{root}/{STATE_DIR}", recursive=True)
        if source.type == pafs.FileType.File:
            fs.move(source.path, f"{root}/{new}")
        else:  # object stores cannot rename a folder: move its files one by one
            for entry in fs.get_file_info(pafs.FileSelector(source.path, recursive=True)):
                if entry.type == pafs.FileType.File:
                    target = f"{root}/{new}{entry.path[len(source.path):]}"
                    fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                    fs.move(entry.path, target)
            fs.delete_dir(source.path)
        moved.append(old)
    stale_lock = fs.get_file_info(f"{root}/_corpusmill.lock")
    if stale_lock.type == pafs.FileType.File:  # left by an earlier version's killed run
        fs.delete_file(stale_lock.path)
    return moved


def committed_rows(output: str, id_column: str | None = None, scope=None) -> int:
    """Rows whose write Ray Data has committed (its checkpoint files, not pending ones), from
    their footers; with `scope` (jobs/stores/ids.py IdPartitions of ids), only those whose id is in
    it, streamed through hash partitions like it. Data files of a killed run may be partial;
    Ray deletes those when the next run starts."""
    fs, root = output_filesystem(output)
    files = [entry for entry in fs.get_file_info(pafs.FileSelector(
        f"{root}/{CHECKPOINT_DIR}", allow_not_found=True))
        if entry.base_name.endswith(".parquet") and ".pending." not in entry.base_name]
    if scope is None:
        return sum(_footer(fs, entry.path).num_rows for entry in files)
    from corpusmill.jobs.stores.ids import IdPartitions, id_hash

    with IdPartitions(scope.partitions) as ids:
        for source, entry in enumerate(files):
            for values in _iter_columns(fs, entry.path, [id_column]):
                ids.add(id_hash(values.column(0)), source)
        return ids.count_in(scope)["rows"]


def _footer(fs: pafs.FileSystem, path: str) -> pq.FileMetaData:
    with fs.open_input_file(path) as f:
        return pq.ParquetFile(f).metadata


def _iter_columns(fs: pafs.FileSystem, path: str, columns: list[str]):
    """Record batches of `columns` of one output file, a bounded number of rows at a time."""
    from corpusmill.jobs.stores.ids import READ_BATCH_ROWS

    with fs.open_input_file(path) as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=READ_BATCH_ROWS, columns=columns)


def checkpoint_path(output: str) -> str:
    """Where Ray Data keeps the ids of committed rows: inside the output folder, so the two
    travel together (readers skip `_`-prefixed paths). Being inside matters on object stores,
    where a rename is copy-then-delete: a kill between the two leaves a committed checkpoint
    beside its pending twin, and Ray's cleanup (which deletes every file under the output
    whose name starts with a pending checkpoint's) then removes both the data and the
    committed ids, so those rows are recomputed rather than lost."""
    return f"{output.rstrip('/')}/{CHECKPOINT_DIR}"


def write_empty(output: str, schema: pa.Schema) -> None:
    """A zero-row corpus still yields a valid output: one empty file with the output schema."""
    fs, root = output_filesystem(output)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/empty-{uuid.uuid4().hex[:8]}.parquet") as f:
        pq.write_table(schema.empty_table(), f)


COUNT_THREADS = 16  # output files whose footers are read at a time


def output_counts(output: str, id_column: str | None = None, scope=None) -> dict[str, int]:
    """Rows written, rows with an error, rows whose input was truncated (tasks that write
    `input_truncated`), and (given the id column) ids written more than once.

    Rows, errors and truncations come from the files' footers (row counts, the `error`
    column's null count, `input_truncated`'s maximum; a row group whose statistics say
    nothing is read for that one column). Ids stream through hash partitions on local disk
    (jobs/stores/ids.py), so the driver never holds them all. With `scope` (IdPartitions of ids:
    an incremental run's own), rows, errors and truncations count only rows whose id is in
    it; duplicates are checked over all rows."""
    from concurrent.futures import ThreadPoolExecutor

    fs, root = output_filesystem(output)
    entries = _data_files(fs, root)
    with ThreadPoolExecutor(max(1, min(COUNT_THREADS, len(entries) or 1))) as pool:
        tallies = list(pool.map(lambda entry: _file_counts(fs, entry.path), entries))
    counts = {"files": len(entries), "rows_out": sum(t[0] for t in tallies),
              "rows_errored": sum(t[1] for t in tallies),
              "rows_truncated": sum(t[2] for t in tallies), "ids_duplicated": 0}
    if id_column is None:
        return counts
    from corpusmill.jobs.stores.ids import IdPartitions, find_duplicates, id_hash, partitions_for

    flags = ("errored", "truncated") if scope is not None else ()
    partitions = scope.partitions if scope is not None else partitions_for(counts["rows_out"])
    with IdPartitions(partitions, flags) as ids:
        def spill(source: int) -> None:
            path = entries[source].path
            names = pq.read_schema(path, filesystem=fs).names if scope is not None else []
            truncated = truncation_columns(names)
            columns = [id_column] + ([ERROR] if scope is not None else []) + truncated
            for batch in _iter_columns(fs, path, columns):
                row_flags = {}
                if scope is not None:
                    row_flags["errored"] = pc.is_valid(batch.column(ERROR)).to_numpy(
                        zero_copy_only=False)
                    row_flags["truncated"] = _any_true(batch, truncated)
                ids.add(id_hash(batch.column(0)), source, row_flags)

        with ThreadPoolExecutor(max(1, min(4, len(entries) or 1))) as pool:
            list(pool.map(spill, range(len(entries))))
        found = find_duplicates(
            ids, lambda source: (b.column(0) for b in _iter_columns(fs, entries[source].path,
                                                                    [id_column])),
            len(entries), shown=0)
        counts["ids_duplicated"] = found.count
        if scope is not None:
            inside = ids.count_in(scope)
            counts.update(rows_out=inside["rows"], rows_errored=inside["errored"],
                          rows_truncated=inside["truncated"])
    return counts


def truncation_columns(names: list[str]) -> list[str]:
    """The columns that flag a row's input as truncated: `input_truncated`, or in the output
    of a job with several tasks each task's `<name>_input_truncated`."""
    if INPUT_TRUNCATED in names:
        return [INPUT_TRUNCATED]
    return [n for n in names if n.endswith(f"_{INPUT_TRUNCATED}")]


def _any_true(table, columns: list[str]):
    """Per row: any of `columns` true (nulls false); zeros without columns."""
    import numpy as np

    flags = np.zeros(table.num_rows, dtype=bool)
    for name in columns:
        flags |= pc.fill_null(table.column(name), False).to_numpy(zero_copy_only=False)
    return flags


def _file_counts(fs: pafs.FileSystem, path: str) -> tuple[int, int, int]:
    """(rows, rows with an error, rows with input_truncated) of one output file, from its
    footer where its statistics answer."""
    with fs.open_input_file(path) as f:
        parquet = pq.ParquetFile(f)
        meta = parquet.metadata
        names = parquet.schema_arrow.names
        error_at = names.index(ERROR) if ERROR in names else None
        flagged = truncation_columns(names)
        errored = truncated = 0
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            if error_at is not None:
                stats = _leaf_statistics(parquet, row_group, ERROR)
                if stats is not None and stats.has_null_count:
                    errored += row_group.num_rows - stats.null_count
                else:
                    column = parquet.read_row_group(group, columns=[ERROR]).column(0)
                    errored += len(column) - column.null_count
            if len(flagged) == 1:
                stats = _leaf_statistics(parquet, row_group, flagged[0])
                if stats is not None and stats.has_min_max and stats.max is False:
                    continue
                if stats is not None and stats.has_min_max and stats.min is True:
                    truncated += row_group.num_rows - (stats.null_count or 0)
                    continue
            if flagged:  # several tasks' flags: a row counts once, whichever truncated it
                table = parquet.read_row_group(group, columns=flagged)
                truncated += int(_any_true(table, flagged).sum())
        return meta.num_rows, errored, truncated


def _leaf_statistics(parquet: pq.ParquetFile, row_group, name: str):
    """The statistics of the column chunk of top-level column `name`, if it is a leaf."""
    for i in range(row_group.num_columns):
        chunk = row_group.column(i)
        if chunk.path_in_schema == name:
            return chunk.statistics if chunk.is_stats_set else None
    return None


def _data_files(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    """The output's Parquet files, in partition folders too (folders starting with `.` or `_`,
    such as the state folder and its checkpoint, are not data: readers skip them too)."""
    entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True, recursive=True))
    return sorted((e for e in entries
                   if e.type == pafs.FileType.File and e.base_name.endswith(".parquet")
                   and not any(part.startswith(("_", "."))
                               for part in e.path[len(root):].strip("/").split("/")[:-1])),
                  key=lambda e: e.path)


def data_files(output: str) -> tuple[pafs.FileSystem, str, list[str]]:
    """The output's filesystem, root, and data files as paths relative to the root."""
    fs, root = output_filesystem(output)
    return fs, root, [e.path[len(root):].lstrip("/") for e in _data_files(fs, root)]


def output_preview(output: str, columns: list[str], rows: int = 5) -> list[dict]:
    """The first `rows` output rows, only `columns`, for the end-of-run summary. A column of
    `partition_by` is not in the files: its value comes from the file's `key=value/` folder."""
    fs, root = output_filesystem(output)
    preview: list[dict] = []
    for entry in _data_files(fs, root):
        if len(preview) >= rows:
            break
        folders = dict(part.split("=", 1) for part in entry.path[len(root):].split("/")[:-1]
                       if "=" in part)
        with fs.open_input_file(entry.path) as f:
            parquet = pq.ParquetFile(f)
            stored = [c for c in columns if c in parquet.schema_arrow.names]
            table = parquet.read(columns=stored).slice(0, rows - len(preview))
        preview += [{c: row.get(c, folders.get(c)) for c in columns} for row in table.to_pylist()]
    return preview


def read_manifest(output: str) -> dict | None:
    fs, root = output_filesystem(output)
    try:
        with fs.open_input_stream(f"{root}/{MANIFEST}") as f:
            return json.loads(f.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_manifest(output: str, manifest: dict) -> None:
    fs, root = output_filesystem(output)
    fs.create_dir(f"{root}/{STATE_DIR}", recursive=True)
    with fs.open_output_stream(f"{root}/{MANIFEST}") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())


class OutputFolder:
    """A job's output folder, one object for what it holds: data files, the manifest (with the
    fingerprints of the input files runs read), Ray's checkpoint, the incremental ledger, the
    lock, logs and the report. Local or on object storage alike."""

    def __init__(self, path: str):
        self.path = path

    # --- before a run -------------------------------------------------------------------
    def state(self, spec) -> OutputState:
        """What to do with what the folder holds (see `check_output`); refuses another job's
        output naming the settings that differ. An earlier version's layout is moved into
        `.corpusmill/` first."""
        migrate_legacy_layout(self.path)
        return check_output(self.path, spec.output_mode, spec.job_id, spec.identity)

    def refuse_changed_inputs(self, corpus) -> tuple[str, ...]:
        """A resumed job whose input files changed since earlier runs read them would keep
        their stale rows: refused, naming the files. Returns the files earlier runs read that
        are gone now (their rows stay; the summary says so)."""
        from corpusmill.jobs.stores.corpus import changed_files

        recorded = (self.manifest() or {}).get("inputs") or {}
        changed = changed_files(corpus.files, recorded)
        if changed:
            raise JobError(
                f"input file(s) {', '.join(map(repr, changed[:5]))}"
                f"{f' and {len(changed) - 5} more' if len(changed) > 5 else ''} changed since "
                f"an earlier run of this job read them into {self.path!r}: their rows there "
                f"are stale. Rerun with output_mode: overwrite (or --set output_mode=overwrite) "
                f"to recompute the whole output, or restore the files; put new rows in new "
                f"files, which a rerun adds")
        names = {f.name for f in corpus.files}
        return tuple(sorted(name for name in recorded if name not in names))

    def check_writable(self) -> None:
        check_writable(self.path)

    def replace(self) -> None:
        replace_output(self.path)

    def lock(self, run_id: str):
        from corpusmill.jobs.stores.lock import OutputLock

        return OutputLock(self.path, run_id)

    # --- the manifest and the ledger ---------------------------------------------------
    def manifest(self) -> dict | None:
        return read_manifest(self.path)

    def write_manifest(self, manifest: dict) -> None:
        write_manifest(self.path, manifest)

    def recorded_inputs(self) -> dict[str, dict]:
        return (self.manifest() or {}).get("inputs") or {}

    def ledger(self) -> dict[str, dict]:
        from corpusmill.jobs.stores.ledger import read_ledger

        return read_ledger(self.path)

    def record_ledger(self, ledger: dict[str, dict], done) -> None:
        from corpusmill.jobs.stores.ledger import record_files

        record_files(self.path, ledger, done)

    # --- what was written ---------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        return checkpoint_path(self.path)

    def committed_rows(self, id_column: str | None = None, scope=None) -> int:
        return committed_rows(self.path, id_column, scope)

    def counts(self, id_column: str | None = None, scope=None) -> dict:
        return output_counts(self.path, id_column, scope)

    def data_files(self) -> list[str]:
        return data_files(self.path)[2]

    def preview(self, columns: list[str], rows: int = 5) -> list[dict]:
        return output_preview(self.path, columns, rows)

    def write_empty(self, schema: pa.Schema) -> None:
        write_empty(self.path, schema)
