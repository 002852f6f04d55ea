"""Arrow IPC files as corpus input: the `*.arrow` files `datasets.Dataset.save_to_disk` (and the
`datasets` cache) writes, in the IPC *stream* format, and IPC *file* format files (`ARROW1`).

A file's record batches play the part of Parquet's row groups: one read fragment per batch,
read in one piece, ids '<file>:<row>' counting rows from the start of the file. An IPC stream
has no index, so `index_arrow` (run once by the driver, jobs/stores/corpus.py) walks its messages and
records where each record batch starts; a read task then seeks straight to its batch.

Column contract: the batch's own columns, as stored (operators/readers/read.py casts them to the
job's read schema)."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

FILE_MAGIC = b"ARROW1"


@dataclass(frozen=True)
class ArrowLayout:
    schema: pa.Schema
    batch_rows: tuple[int, ...]     # rows per record batch
    offsets: tuple[int, ...]        # stream format: byte offset of each batch's message
    stream: bool                    # IPC stream (True) or IPC file format


def index_arrow(handle) -> ArrowLayout:
    """Schema, rows per record batch and (stream format) where each batch starts, from one
    pass over the file's messages. Raises pa.ArrowInvalid / OSError for a file that is not
    Arrow IPC."""
    head = handle.read(len(FILE_MAGIC))
    handle.seek(0)
    if head == FILE_MAGIC:
        reader = pa.ipc.open_file(handle)
        rows = tuple(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return ArrowLayout(reader.schema, rows, (), stream=False)
    schema = pa.ipc.read_schema(pa.ipc.read_message(handle))
    rows, offsets = [], []
    while True:
        offset = handle.tell()
        try:
            message = pa.ipc.read_message(handle)
        except EOFError:
            break
        if message.type == "dictionary batch":
            raise pa.ArrowInvalid("dictionary-encoded Arrow streams are not supported as "
                                  "input; decode the dictionary columns (or write Parquet)")
        if message.type == "record batch":
            offsets.append(offset)
            rows.append(pa.ipc.read_record_batch(message, schema).num_rows)
    return ArrowLayout(schema, tuple(rows), tuple(offsets), stream=True)


def read_arrow_batch(handle, schema: pa.Schema, offsets: tuple[int, ...], batch: int,
                     columns: list[str]) -> pa.Table:
    """Record batch `batch` of the file open as `handle` (`schema`: the file's own columns;
    `offsets`: from `index_arrow`, empty for the IPC file format), only `columns`."""
    if offsets:
        handle.seek(offsets[batch])
        record_batch = pa.ipc.read_record_batch(pa.ipc.read_message(handle), schema)
    else:
        record_batch = pa.ipc.open_file(handle).get_batch(batch)
    return pa.Table.from_batches([record_batch]).select(columns)
