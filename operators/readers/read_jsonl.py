"""JSON Lines files (`*.jsonl`, `*.ndjson`) as corpus input: one JSON object per line.

Groups of up to GROUP_ROWS lines play the part of Parquet's row groups: `index_jsonl` (run once
by the driver, jobs/stores/corpus.py) walks the file and records where each group starts; a read task
parses one group's byte range with pyarrow's JSON reader. Blank lines are not rows: ids
'<file>:<row>' count the JSON objects from the start of the file. The columns and their types
are inferred from the first SCHEMA_SAMPLE_BYTES of the file (a field that is null there is read
as a string); a later line whose value does not fit its column's type stops the job naming
the file.

Column contract: the group's columns, as parsed (operators/readers/read.py casts them to the job's
read schema)."""
from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.json as pj

GROUP_ROWS = 8192
SCHEMA_SAMPLE_BYTES = 1 << 20
_CHUNK = 8 << 20


@dataclass(frozen=True)
class JsonlLayout:
    schema: pa.Schema
    group_rows: tuple[int, ...]     # JSON objects per group
    offsets: tuple[int, ...]        # byte offset where each group starts


def index_jsonl(handle) -> JsonlLayout:
    """Schema, and rows and start offsets of the groups, from one pass over the file."""
    rows, offsets, sample = [], [], bytearray()
    position = count = 0
    carry = b""
    while True:
        chunk = handle.read(_CHUNK)
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop() if chunk else b""
        for line in lines:
            if line.strip():
                if count == 0:
                    offsets.append(position)
                count += 1
                if count == GROUP_ROWS:
                    rows.append(count)
                    count = 0
                if len(sample) < SCHEMA_SAMPLE_BYTES:
                    sample += line + b"\n"
            position += len(line) + 1
        if not chunk:
            break
    if count:
        rows.append(count)
    schema = pj.read_json(io.BytesIO(bytes(sample))).schema if sample else pa.schema([])
    schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                        for f in schema])
    return JsonlLayout(schema, tuple(rows), tuple(offsets))


def read_jsonl_group(handle, schema: pa.Schema, offsets: tuple[int, ...], size: int,
                     group: int, columns: list[str]) -> pa.Table:
    """Group `group` of the file open as `handle`, parsed as `schema`, only `columns`."""
    start = offsets[group]
    end = offsets[group + 1] if group + 1 < len(offsets) else size
    handle.seek(start)
    data = handle.read(end - start)
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    return pj.read_json(io.BytesIO(data), parse_options=options).select(columns)
