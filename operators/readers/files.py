"""What the driver and the readers share without Ray: a corpus file as the driver found it
(`CorpusFile`, jobs/stores/corpus.py fills it from its footer), the generated id column's name,
and reading one group of a file (`read_group`, `read_row_group`). operators/readers/read.py
streams these inside Ray Data; jobs/preflight.py and jobs/stores/ import them from here, so
that checking a job (`corpusmill validate`) does not import Ray.

The column contract of the tables `read_row_group` yields is read.py's (its docstring)."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from corpusmill.errors import JobError
from corpusmill.operators.stats import Timer, report, report_corrupt

GENERATED_ID = "row_id"


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


def fragments_of(files: list[CorpusFile]) -> list[tuple[CorpusFile, int, int]]:
    """(file, row group, its first row) of every non-empty group, file after file."""
    return [(f, group, sum(f.row_groups[:group])) for f in files
            for group in range(len(f.row_groups)) if f.row_groups[group] > 0]


def read_fragments(fs, fragments, schema: pa.Schema, id_column: str | None,
                   rows_per_block: int, skip_corrupt: bool = False, stats_name: str = ""):
    """Yield the blocks of `fragments` (`fragments_of`) in order, each timed and reported to the
    run's statistics (stage `read`): a Ray read task's work (read.py), or a job's in this
    process (jobs/in_process.py)."""
    for corpus_file, group, first_row in fragments:
        blocks = read_row_group(fs, corpus_file, group, first_row, schema, id_column,
                                rows_per_block, skip_corrupt=skip_corrupt, stats_name=stats_name)
        while True:
            with Timer() as timer:
                block = next(blocks, None)
            if block is None:
                break
            report(stats_name, "read", rows=block.num_rows, seconds=timer.seconds)
            yield block


def read_row_group(fs, corpus_file: CorpusFile, group: int, first_row: int, schema: pa.Schema,
                   id_column: str | None, rows_per_block: int, skip_corrupt: bool = False,
                   stats_name: str = ""):
    """Yield tables of at most `rows_per_block` rows of one row group, in `schema`.

    A row group whose data cannot be decoded (damaged pages under an intact footer) stops the
    job naming the file, or with `skip_corrupt` is skipped whole and reported, so none of its
    rows is half-counted: a group is read in one piece, or, when it is large, in slices after
    one pass that decodes it all (`_group_pieces`)."""
    wanted = [name for name in schema.names if name != GENERATED_ID or id_column is not None]
    partitions = dict(corpus_file.partitions)
    present = [name for name in wanted if name in corpus_file.schema.names]
    stored = [name for name in present if name not in partitions]
    pieces = _group_pieces(fs, corpus_file, group, stored, rows_per_block,
                           check_first=skip_corrupt)
    offset = 0
    while True:
        try:
            part = next(pieces, None)
        except (OSError, pa.ArrowInvalid) as e:
            why = " ".join(str(e).split())  # one line: the CLI shows it as one
            if skip_corrupt and offset == 0:
                report_corrupt(stats_name, corpus_file.name, group,
                               corpus_file.row_groups[group], why)
                return
            after = f" after its first {offset:,} rows" if offset else ""
            raise JobError(f"cannot read row group {group} of Parquet file {corpus_file.name!r}"
                           f"{after}: {why}. Its data is damaged (the footer reads fine); repair "
                           f"or remove the file, or set skip_corrupt_files: true to skip damaged "
                           f"parts (they are listed in the run summary)") from None
        if part is None:
            return
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
        offset += part.num_rows


# A Parquet row group of more rows, or whose read columns hold more bytes (uncompressed in the
# file; a dictionary-encoded column decodes to more), is read in slices, its pages streamed
# this many bytes at a time.
STREAM_GROUP_ROWS = 1 << 16
STREAM_GROUP_BYTES = 64 << 20
STREAM_BUFFER_BYTES = 8 << 20


def _group_pieces(fs, corpus_file: CorpusFile, group: int, columns: list[str],
                  rows_per_block: int, check_first: bool = False):
    """Tables of at most `rows_per_block` rows of one group, in order. A Parquet row group of
    more than STREAM_GROUP_ROWS rows (pyarrow writes groups of 1,048,576 by default), or whose
    `columns` hold more than STREAM_GROUP_BYTES, is never held whole: it is read in slices;
    `check_first` decodes it once beforehand (no slice kept), so that damaged data stops it
    before its first rows. Other groups are read in one piece and sliced."""
    if corpus_file.format != "parquet":
        table = read_group(fs, corpus_file, group, columns)
    else:
        with fs.open_input_file(corpus_file.path) as f:
            parquet = pq.ParquetFile(f)
            meta = parquet.metadata.row_group(group)
            if (meta.num_rows <= STREAM_GROUP_ROWS
                    and _uncompressed_bytes(meta, columns) <= STREAM_GROUP_BYTES):
                table = parquet.read_row_group(group, columns=columns)
            else:
                streamed = pq.ParquetFile(f, metadata=parquet.metadata,
                                          buffer_size=STREAM_BUFFER_BYTES)

                def batches():
                    return streamed.iter_batches(batch_size=rows_per_block, row_groups=[group],
                                                 columns=columns, use_threads=False)

                if check_first:
                    for _ in batches():
                        pass
                for batch in batches():
                    yield pa.Table.from_batches([batch])
                return
    for offset in range(0, table.num_rows, rows_per_block):
        yield table.slice(offset, rows_per_block)


def _uncompressed_bytes(row_group, columns: list[str]) -> int:
    """Uncompressed bytes of `columns` (top-level names) in one row group's metadata."""
    wanted = set(columns)
    return sum(row_group.column(i).total_uncompressed_size
               for i in range(row_group.num_columns)
               if row_group.column(i).path_in_schema.split(".")[0] in wanted)


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
