"""Postprocess operator: pure function from raw model outputs to the task's output columns.

Column contract
    in:  inference's output (id, kept columns, _cm_raw_* columns, error)
    out: exactly `plan.output_schema`: id, kept columns, the task's output columns (null where
         `error` is set), error; provenance in the schema metadata. Under on_error: skip, rows
         with an error are left out.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.plan import ERROR, RAW_PREFIX, JobPlan


def postprocess_batch(table: pa.Table, plan: JobPlan) -> pa.Table:
    errors = table.column(ERROR)
    valid = [i for i, e in enumerate(errors.to_pylist()) if e is None]
    task_fields = plan.task.output_fields()
    columns: dict[str, list] = {f.name: [None] * table.num_rows for f in task_fields}
    if valid:
        raw = {name[len(RAW_PREFIX):]: _stack(table.column(name), valid)
               for name in table.column_names if name.startswith(RAW_PREFIX)}
        decoded = plan.task.decode(raw, plan.options, plan.model_config)
        for name, values in decoded.items():
            for k, row in enumerate(valid):
                columns[name][row] = values[k]
    arrays = []
    for field in plan.output_schema:
        if field.name in columns:
            arrays.append(pa.array(columns[field.name], field.type))
        else:
            arrays.append(table.column(field.name).cast(field.type))
    out = pa.Table.from_arrays(arrays, schema=plan.output_schema)
    if plan.spec.on_error == "skip":
        out = out.filter(pc.is_null(out.column(ERROR)))
    return out


def _stack(column: pa.ChunkedArray, rows: list[int]) -> np.ndarray:
    """(len(rows), width) float32 from a list<float32> column."""
    taken = column.take(pa.array(rows)).combine_chunks()
    width = len(taken[0])
    return taken.flatten().to_numpy(zero_copy_only=False).reshape(len(rows), width)
