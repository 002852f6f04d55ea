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

import pyarrow as pa
import pyarrow.fs as pafs
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

# the Ray-free part (the driver imports it from there): re-exported for readers of this module
from corpusmill.operators.readers.files import (  # noqa: F401
    GENERATED_ID, CorpusFile, fragments_of, read_fragments, read_group, read_row_group,
)

_GLOB_CHARS = "*?["


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
        groups = _split_evenly(fragments_of(self._files), max(1, parallelism))
        return [self._read_task(group) for group in groups if group]

    def blocks(self):
        """Every block, file after file, read in this process (no Ray tasks)."""
        return read_fragments(self._fs, fragments_of(self._files), self._schema,
                              self._id_column, self._rows_per_block, self._skip_corrupt,
                              self._stats_name)

    def _read_task(self, fragments) -> ReadTask:
        fs, schema, id_column, rows = self._fs, self._schema, self._id_column, self._rows_per_block
        stats_name, skip_corrupt = self._stats_name, self._skip_corrupt
        num_rows = sum(f.row_groups[g] for f, g, _ in fragments)
        size = sum(f.size_bytes * f.row_groups[g] // max(1, f.num_rows) for f, g, _ in fragments)
        metadata = BlockMetadata(num_rows=num_rows, size_bytes=size, exec_stats=None,
                                 input_files=tuple(sorted({f.path for f, _, _ in fragments})))

        def read_fn():
            yield from read_fragments(fs, fragments, schema, id_column, rows, skip_corrupt,
                                      stats_name)

        return ReadTask(read_fn, metadata, schema=schema)


def _split_evenly(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(min(parts, len(items))):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


