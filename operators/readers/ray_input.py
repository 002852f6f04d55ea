"""A caller's own Ray Dataset as input (corpusmill.annotate): its blocks brought to the reader's
column contract, so the same tokenize -> infer -> postprocess chain runs on them.

Column contract of every block out (as operators/readers/read.py's):
    <id column>     the caller's `id_column`, or `row_id` (string '<block>:<row>', generated:
                    a Ray Dataset has no files to name rows by; dropped again at the end)
    <input columns> as string (binary where stored as bytes; tokenize decodes those per row)
    <kept columns>  every other column of the dataset, as it is
"""
from __future__ import annotations

import uuid

import pyarrow as pa

from corpusmill.operators.readers.files import GENERATED_ID


def conform_batch(table: pa.Table, schema: pa.Schema, generate_ids: bool) -> pa.Table:
    """`table` (a block of the caller's dataset) in `schema` (the plan's read schema)."""
    columns = []
    block = uuid.uuid4().hex[:12]
    for field in schema:
        if field.name == GENERATED_ID and generate_ids:
            columns.append(pa.array([f"{block}:{i}" for i in range(table.num_rows)], pa.string()))
            continue
        column = table.column(field.name)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)
