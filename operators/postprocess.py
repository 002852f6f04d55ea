"""Postprocess operator: pure function from raw model outputs to the task's output columns.

Column contract
    in:  inference's output (id, kept columns, task input columns, _cm_extras, _cm_raw, error)
    out: exactly `plan.output_schema`: id, kept columns, the task's output columns (null where
         `error` is set; `input_truncated` from the tokenizer's flag, for tasks that write it),
         error; provenance in the schema metadata. Under on_error: skip, rows
         with an error are left out.
"""
from __future__ import annotations

import pickle

import pyarrow as pa
import pyarrow.compute as pc

from corpusmill.operators.loading import load_tokenizer
from corpusmill.operators.plan import ERROR, EXTRAS, RAW, TRUNCATED, JobPlan
from corpusmill.operators.stats import Timer, report
from corpusmill.operators.tokenize import input_texts
from corpusmill.pipelines.base import INPUT_TRUNCATED, Rows


def postprocess_batch(table: pa.Table, plan: JobPlan) -> pa.Table:
    with Timer() as timer:
        out = _postprocess(table, plan)
    failed = table.num_rows - table.column(ERROR).null_count  # rows with an error
    report(plan.stats_name, "postprocess", rows=table.num_rows, seconds=timer.seconds,
           rows_out=out.num_rows, errors=failed, skipped=table.num_rows - out.num_rows)
    return out


def _postprocess(table: pa.Table, plan: JobPlan) -> pa.Table:
    errors = table.column(ERROR).to_pylist()
    valid = [i for i, e in enumerate(errors) if e is None]
    task_fields = plan.task.output_fields()
    columns: dict[str, list] = {f.name: [None] * table.num_rows for f in task_fields}
    if valid:
        spec = plan.spec
        texts, _ = input_texts(table.take(valid), plan)
        raw = table.column(RAW).take(valid).to_pylist()
        extras = table.column(EXTRAS).take(valid).to_pylist()
        rows = Rows(outputs=[pickle.loads(r) for r in raw], texts=texts,
                    extras=[None if e is None else pickle.loads(e) for e in extras])
        tokenizer = load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
        decoded = plan.task.decode(rows, plan.options, plan.model_config, tokenizer)
        for name, values in decoded.items():
            for k, row in enumerate(valid):
                columns[name][row] = values[k]
        if INPUT_TRUNCATED in columns:
            truncated = table.column(TRUNCATED).to_pylist()
            for row in valid:
                columns[INPUT_TRUNCATED][row] = truncated[row]
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
