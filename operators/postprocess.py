"""Postprocess operator: pure function from raw model outputs to the task's output columns.

Column contract
    in:  inference's output (id, kept columns, task input columns, _cm_extras, the raw
         outputs: typed columns or _cm_raw pickles (operators/infer.py), error)
    out: exactly `plan.output_schema`: id, kept columns, the task's output columns (null where
         `error` is set; `input_truncated` from the tokenizer's flag, for tasks that write it),
         error; provenance in the schema metadata. Under on_error: skip, rows
         with an error are left out.
"""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusmill.operators.loading import load_tokenizer
from corpusmill.operators.plan import ERROR, EXTRAS, RAW, TRUNCATED, JobPlan
from corpusmill.operators.raw_outputs import RawOutputs
from corpusmill.operators.stats import Timer, report
from corpusmill.operators.tokenize import input_texts
from corpusmill.pipelines.base import INPUT_TRUNCATED, Rows


def postprocess_batch(table: pa.Table, plan: JobPlan) -> pa.Table:
    with Timer() as timer:
        out = decode_block(table, plan)
    failed = table.num_rows - table.column(ERROR).null_count  # rows with an error
    report(plan.stats_name, "postprocess", rows=table.num_rows, seconds=timer.seconds,
           rows_out=out.num_rows, errors=failed, skipped=table.num_rows - out.num_rows)
    return out


def decode_block(table: pa.Table, plan: JobPlan, leave_out_errors: bool = True) -> pa.Table:
    valid = table.column(ERROR).is_null().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    decoded: dict[str, object] = {}
    if len(rows):
        spec = plan.spec
        everything = len(rows) == table.num_rows
        chosen = table if everything else table.take(rows)
        texts, _ = input_texts(chosen, plan)
        extras = chosen.column(EXTRAS)
        extras = ([None] * len(rows) if extras.null_count == len(extras) else
                  [None if e is None else pickle.loads(e) for e in extras.to_pylist()])
        if plan.task.typed_outputs:
            outputs = Rows(raw=RawOutputs(table, rows), texts=texts, extras=extras)
        else:
            outputs = Rows(outputs=[pickle.loads(r) for r in chosen.column(RAW).to_pylist()],
                           texts=texts, extras=extras)
        tokenizer = (load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
                     if plan.task.decode_uses_tokenizer else None)
        decoded = plan.task.decode(outputs, plan.options, plan.model_config, tokenizer)
        if INPUT_TRUNCATED in {f.name for f in plan.task.output_fields()}:
            decoded[INPUT_TRUNCATED] = chosen.column(TRUNCATED)
    # each output column over the rows that decoded, then spread to all rows (null where
    # `error` is set) in one `take`, never row by row
    spread = None if len(rows) == table.num_rows else _spread(valid)
    arrays = []
    for field in plan.output_schema:
        if field.name in decoded:
            column = _as_array(decoded[field.name], field.type)
            arrays.append(column if spread is None else column.take(spread))
        elif field.name in plan.task_output_names:
            arrays.append(pa.nulls(table.num_rows, field.type))
        else:
            arrays.append(table.column(field.name).cast(field.type))
    out = pa.Table.from_arrays(arrays, schema=plan.output_schema)
    if plan.spec.on_error == "skip" and leave_out_errors:
        out = out.filter(pc.is_null(out.column(ERROR)))
    return out


def _spread(valid: np.ndarray) -> pa.Array:
    """Indices into the decoded rows for every row of the block, null where a row failed."""
    index = np.cumsum(valid) - 1
    return pa.array(index, pa.int64(), mask=~valid)


def _as_array(values, type_: pa.DataType) -> pa.Array:
    """A decoded column (an Arrow array, a numpy array or a list) as an array of `type_`."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == type_ else values.cast(type_)
    if isinstance(values, np.ndarray) and values.ndim == 2 and (
            pa.types.is_fixed_size_list(type_) or pa.types.is_list(type_)):
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), type_.value_type)
        if pa.types.is_fixed_size_list(type_):
            return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        offsets = np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), flat).cast(type_)
    return pa.array(values, type_)
