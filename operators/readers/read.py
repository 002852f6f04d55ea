"""Reading the corpus inside Ray: stream the rows of the files the driver found (jobs/stores/corpus.py)
into Ray Data through a small `Datasource`.

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

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from corpusmill.errors import JobError
from corpusmill.operators.stats import Timer, report, report_corrupt

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
    fingerprint: str = ""           # of its content (jobs/stores/corpus.py): a changed file is noticed
    format: str = "parquet"         # parquet | arrow (IPC, save_to_disk) | jsonl
    offsets: tuple[int, ...] = ()   # arrow streams, jsonl: byte offset where each group starts

    @property
    def num_rows(self) -> int:
        return sum(self.row_groups)


class CorpusDatasource(Datasource):
    """Streams rows of `files` as Arrow tables with the column contract above.

    One read fragment per row group; a read task takes one or more fragments."""

    def __init__(self, fs: pafs.FileSystem, files: list[CorpusFile], schema: pa.Schema,
                 id_column: str | None, rows_per_block: int = 1024, stats_name: str = "",
                 skip_corrupt: bool = False):
        self._fs = fs
        self._stats_name = stats_name      # the run's statistics actor (operators/stats.py)
        self._skip_corrupt = skip_corrupt  # skip unreadable row groups (reported), or stop
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

    def blocks(self):
        """Every block, file after file, read in this process (no Ray): the job in this
        process (jobs/in_process.py), samples and tests."""
        for task in self.get_read_tasks(1):
            yield from task.read_fn()

    def _read_task(self, fragments) -> ReadTask:
        fs, schema, id_column, rows = self._fs, self._schema, self._id_column, self._rows_per_block
        stats_name, skip_corrupt = self._stats_name, self._skip_corrupt
        num_rows = sum(f.row_groups[g] for f, g, _ in fragments)
        size = sum(f.size_bytes * f.row_groups[g] // max(1, f.num_rows) for f, g, _ in fragments)
        metadata = BlockMetadata(num_rows=num_rows, size_bytes=size, exec_stats=None,
                                 input_files=tuple(sorted({f.path for f, _, _ in fragments})))

        def read_fn():
            for corpus_file, group, first_row in fragments:
                blocks = read_row_group(fs, corpus_file, group, first_row, schema, id_column, rows,
                                        skip_corrupt=skip_corrupt, stats_name=stats_name)
                while True:
                    with Timer() as timer:
                        block = next(blocks, None)
                    if block is None:
                        break
                    report(stats_name, "read", rows=block.num_rows, seconds=timer.seconds)
                    yield block

        return ReadTask(read_fn, metadata, schema=schema)


def read_row_group(fs, corpus_file: CorpusFile, group: int, first_row: int, schema: pa.Schema,
                   id_column: str | None, rows_per_block: int, skip_corrupt: bool = False,
                   stats_name: str = ""):
    """Yield tables of at most `rows_per_block` rows of one row group, in `schema`.

    A row group whose data cannot be decoded (damaged pages under an intact footer) stops the
    job naming the file, or with `skip_corrupt` is skipped whole and reported: a row group is
    read in one piece, so none of its rows is half-counted."""
    wanted = [name for name in schema.names if name != GENERATED_ID or id_column is not None]
    partitions = dict(corpus_file.partitions)
    present = [name for name in wanted if name in corpus_file.schema.names]
    stored = [name for name in present if name not in partitions]
    try:
        table = read_group(fs, corpus_file, group, stored)
    except (OSError, pa.ArrowInvalid) as e:
        if skip_corrupt:
            report_corrupt(stats_name, corpus_file.name, group, corpus_file.row_groups[group],
                           " ".join(str(e).split()))
            return
        why = " ".join(str(e).split())  # one line: the CLI shows it as one
        raise JobError(f"cannot read row group {group} of Parquet file {corpus_file.name!r}: "
                       f"{why}. Its data is damaged (the footer reads fine); repair or remove the "
                       f"file, or set skip_corrupt_files: true to skip damaged parts (they are "
                       f"listed in the run summary)") from None
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


def read_group(fs, corpus_file: CorpusFile, group: int, columns: list[str]) -> pa.Table:
    """One group of a file, only `columns`: a Parquet row group, an Arrow record batch
    (operators/readers/read_arrow.py) or a group of JSON lines (operators/readers/read_jsonl.py)."""
    with fs.open_input_file(corpus_file.path) as f:
        if corpus_file.format == "parquet":
            return pq.ParquetFile(f).read_row_group(group, columns=columns)
        stored = pa.schema([field for field in corpus_file.schema
                            if field.name not in dict(corpus_file.partitions)])
        if corpus_file.format == "arrow":
            from corpusmill.operators.readers.read_arrow import read_arrow_batch

            return read_arrow_batch(f, stored, corpus_file.offsets, group, columns)
        from corpusmill.operators.readers.read_jsonl import read_jsonl_group

        return read_jsonl_group(f, stored, corpus_file.offsets, corpus_file.size_bytes, group,
                                columns)


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


