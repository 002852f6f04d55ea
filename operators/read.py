"""Reading the corpus: find the Parquet files, inspect their footers on the driver, and stream
their rows into Ray Data through a small `Datasource`.

Why not `ray.data.read_parquet`: corpusmill needs ids that a resume can match exactly and a
person can trace ('<file>:<row>', the physical row number in the file), errors that name the
file, and columns unified across files whose schemas differ. Ray's `include_row_hash` hashes
the path string with an offset that restarts per fragment, so it gives none of these.

Column contract of every block read:
    <id column>         the spec's `id_column`, or `row_id` (string '<file>:<row>') when absent
    <input columns>     the corpus columns the task reads, as string (binary where any file
                        stores them as bytes; tokenize decodes those per row)
    <kept columns>      as in the first file that has them; null where a file lacks them
    <partition columns> string: the value of each hive-style `key=value` folder on the file's
                        path below the input folder (e.g. `date=2026-11-22/part-0.parquet`)
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from corpusmill.errors import JobError, storage_error
from corpusmill.operators.stats import Timer, report

GENERATED_ID = "row_id"
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class CorpusFile:
    """One Parquet file of the corpus, from its footer."""

    path: str                       # path as the filesystem opens it
    name: str                       # path relative to the input root: used in ids and messages
    row_groups: tuple[int, ...]     # rows in each row group
    schema: pa.Schema               # the file's columns, then its partition columns (string)
    size_bytes: int
    mtime_ns: int = 0               # modification time, for incremental runs
    partitions: tuple[tuple[str, str], ...] = ()  # hive `key=value` folders on its path

    @property
    def num_rows(self) -> int:
        return sum(self.row_groups)


def hive_partitions(name: str) -> tuple[tuple[str, str], ...]:
    """(key, value) of each `key=value` folder in a path relative to the input root."""
    folders = name.replace(os.sep, "/").split("/")[:-1]
    return tuple(tuple(part.split("=", 1)) for part in folders
                 if "=" in part and not part.startswith("="))


def find_files(input_path: str) -> tuple[pafs.FileSystem, list[tuple[str, str]]]:
    """(filesystem, [(path, name)]) for a Parquet file, folder (recursive) or glob.

    Raises JobError when nothing exists at the path, no Parquet file is found, or the store
    refuses (missing bucket, credentials, permissions), naming the path and the fix."""
    try:
        if "://" in input_path:
            fs, root = pafs.FileSystem.from_uri(input_path)
        else:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(input_path)
    except (OSError, ValueError) as e:
        raise storage_error(input_path, e, "read") or JobError(
            f"input {input_path!r} cannot be opened: {e}") from None
    try:
        return _find_files(fs, root, input_path)
    except OSError as e:
        e = _precise(fs, root, e) if "://" in input_path else e
        raise storage_error(input_path, e, "read") or JobError(
            f"input {input_path!r} cannot be listed: {e}") from None


def _precise(fs: pafs.FileSystem, root: str, error: OSError) -> OSError:
    """S3 answers a HEAD request it refuses with a bare 403, whatever the reason (bad keys, no
    grant); a listing's answer names the reason. Ask for one."""
    if "HeadObject" not in str(error):
        return error
    try:
        fs.get_file_info(pafs.FileSelector(root.split("/", 1)[0], allow_not_found=True))
    except OSError as listing:
        return listing
    return error


def _find_files(fs: pafs.FileSystem, root: str,
                input_path: str) -> tuple[pafs.FileSystem, list[tuple[str, str]]]:
    if any(c in root for c in _GLOB_CHARS):
        base = _glob_base(root)
        infos = [i for i in _list(fs, base, input_path) if fnmatch.fnmatch(i.path, root)]
        kind = "glob"
    else:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            _refuse_missing_bucket(fs, root, input_path)
            raise JobError(f"input {input_path!r} does not exist; give a Parquet file, a folder "
                           f"of Parquet files, or a glob such as 'data/*.parquet'")
        if info.type == pafs.FileType.File:
            return fs, [(info.path, os.path.basename(info.path))]
        base, infos, kind = root, _list(fs, root, input_path), "folder"
    files = sorted((i.path, os.path.relpath(i.path, base)) for i in infos
                   if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                   and not os.path.basename(i.path).startswith(("_", ".")))
    if not files:
        raise JobError(f"no Parquet files (*.parquet) found in {kind} {input_path!r}")
    return fs, files


def inspect_files(fs: pafs.FileSystem, files: list[tuple[str, str]], *,
                  skip_corrupt: bool = False) -> tuple[list[CorpusFile], list[str]]:
    """(readable files from their footers, names of corrupt files skipped). A file that is not
    Parquet stops the job, named, unless `skip_corrupt`."""
    corpus, corrupt = [], []
    for path, name in files:
        try:
            with fs.open_input_file(path) as f:
                meta = pq.ParquetFile(f).metadata
                schema = meta.schema.to_arrow_schema()
                size = f.size()
            mtime = fs.get_file_info(path).mtime_ns or 0
        except (OSError, pa.ArrowInvalid) as e:
            refused = storage_error(path, e, "read")
            if refused is not None:  # the store said no: not a corrupt file
                raise refused from None
            if skip_corrupt:
                corrupt.append(name)
                continue
            raise JobError(f"cannot read Parquet file {name!r} ({path}): {e}. Remove or repair "
                           f"it, or set skip_corrupt_files: true to skip such files (they are "
                           f"listed in the run summary)") from None
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        partitions = hive_partitions(name)
        clash = [key for key, _ in partitions if key in schema.names]
        if clash:
            raise JobError(f"Parquet file {name!r} has column(s) {', '.join(map(repr, clash))} "
                           f"and also lies in a partition folder of the same name; rename the "
                           f"column or the folder")
        for key, _ in partitions:
            schema = schema.append(pa.field(key, pa.string()))
        corpus.append(CorpusFile(path, name, groups, schema, size, mtime, partitions))
    if not corpus:
        raise JobError(f"none of the {len(files)} Parquet file(s) could be read; corrupt: "
                       f"{', '.join(corrupt[:10])}")
    return corpus, corrupt


def corpus_ids(fs: pafs.FileSystem, files: list[CorpusFile], id_column: str | None,
               id_type: pa.DataType) -> pa.Array:
    """Every row id of `files` as `id_type`: the id column's values (id_column None: the
    generated '<file>:<row>')."""
    parts = []
    for f in files:
        if id_column is None:
            parts.append(pa.array([f"{f.name}:{i}" for i in range(f.num_rows)], pa.string()))
        else:
            with fs.open_input_file(f.path) as handle:
                column = pq.read_table(handle, columns=[id_column]).column(0)
            parts.extend(chunk.cast(id_type) for chunk in column.chunks)
    return pa.chunked_array(parts, id_type).combine_chunks()


def is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type))


def is_bytes(arrow_type: pa.DataType) -> bool:
    """Binary columns are accepted as text input: each value is decoded as UTF-8 per row."""
    return (pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
            or pa.types.is_binary_view(arrow_type))


class CorpusDatasource(Datasource):
    """Streams rows of `files` as Arrow tables with the column contract above.

    One read fragment per row group; a read task takes one or more fragments."""

    def __init__(self, fs: pafs.FileSystem, files: list[CorpusFile], schema: pa.Schema,
                 id_column: str | None, rows_per_block: int = 1024, stats_name: str = ""):
        self._fs = fs
        self._stats_name = stats_name      # the run's statistics actor (operators/stats.py)
        self._files = files
        self._schema = schema              # target schema of blocks, id column first
        self._id_column = id_column        # None: generate `row_id`
        self._rows_per_block = rows_per_block

    def get_name(self) -> str:
        return "ReadCorpus"

    def estimate_inmemory_data_size(self) -> int:
        return sum(f.size_bytes for f in self._files)

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        fragments = [(f, group, sum(f.row_groups[:group]))
                     for f in self._files for group in range(len(f.row_groups))
                     if f.row_groups[group] > 0]
        groups = _split_evenly(fragments, max(1, parallelism))
        return [self._read_task(group) for group in groups if group]

    def _read_task(self, fragments) -> ReadTask:
        fs, schema, id_column, rows = self._fs, self._schema, self._id_column, self._rows_per_block
        stats_name = self._stats_name
        num_rows = sum(f.row_groups[g] for f, g, _ in fragments)
        size = sum(f.size_bytes * f.row_groups[g] // max(1, f.num_rows) for f, g, _ in fragments)
        metadata = BlockMetadata(num_rows=num_rows, size_bytes=size, exec_stats=None,
                                 input_files=tuple(sorted({f.path for f, _, _ in fragments})))

        def read_fn():
            for corpus_file, group, first_row in fragments:
                blocks = read_row_group(fs, corpus_file, group, first_row, schema, id_column, rows)
                while True:
                    with Timer() as timer:
                        block = next(blocks, None)
                    if block is None:
                        break
                    report(stats_name, "read", rows=block.num_rows, seconds=timer.seconds)
                    yield block

        return ReadTask(read_fn, metadata, schema=schema)


def read_row_group(fs, corpus_file: CorpusFile, group: int, first_row: int, schema: pa.Schema,
                   id_column: str | None, rows_per_block: int):
    """Yield tables of at most `rows_per_block` rows of one row group, in `schema`."""
    wanted = [name for name in schema.names if name != GENERATED_ID or id_column is not None]
    partitions = dict(corpus_file.partitions)
    present = [name for name in wanted if name in corpus_file.schema.names]
    stored = [name for name in present if name not in partitions]
    try:
        with fs.open_input_file(corpus_file.path) as f:
            table = pq.ParquetFile(f).read_row_group(group, columns=stored)
    except (OSError, pa.ArrowInvalid) as e:
        raise JobError(f"cannot read row group {group} of Parquet file {corpus_file.name!r}: "
                       f"{e}") from None
    for offset in range(0, table.num_rows, rows_per_block):
        part = table.slice(offset, rows_per_block)
        columns = []
        for field in schema:
            if field.name == GENERATED_ID and id_column is None:
                start = first_row + offset
                ids = [f"{corpus_file.name}:{start + i}" for i in range(part.num_rows)]
                columns.append(pa.array(ids, pa.string()))
            elif field.name in partitions:
                value = pa.array([partitions[field.name]] * part.num_rows, pa.string())
                columns.append(value.cast(field.type))
            elif field.name in present:
                columns.append(_cast(part.column(field.name), field, corpus_file))
            else:
                columns.append(pa.nulls(part.num_rows, field.type))
        yield pa.Table.from_arrays(columns, schema=schema)


def _cast(column, field: pa.Field, corpus_file: CorpusFile):
    if column.type == field.type:
        return column
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise JobError(f"column {field.name!r} of {corpus_file.name!r} is {column.type}, which "
                       f"does not convert to {field.type} as in the other files: {e}") from None


def _split_evenly(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(min(parts, len(items))):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _refuse_missing_bucket(fs: pafs.FileSystem, root: str, input_path: str) -> None:
    """On object storage a missing key may be a missing bucket: say which."""
    if "://" not in input_path:
        return
    bucket = root.split("/", 1)[0]
    if bucket and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise JobError(f"cannot read {input_path!r}: the bucket {bucket!r} does not exist: "
                       f"create it, or correct the path")


def _glob_base(pattern: str) -> str:
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in _GLOB_CHARS):
            return "/".join(parts[:i]) or "/"
    return pattern


def _list(fs: pafs.FileSystem, base: str, input_path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise JobError(f"input {input_path!r} does not exist") from None
