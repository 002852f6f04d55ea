"""Tokenize operator: CPU tasks that turn text columns into token ids.

Column contract
    in:  the reader's columns (id, task input columns as string, kept columns)
    out: the same, plus
         _cm_input_ids       list<int32>  null for rows that failed
         _cm_token_type_ids  list<int32>  null when the tokenizer gives none
         error               string       null, or why the row cannot be processed
"""
from __future__ import annotations

import pyarrow as pa

from jobs.errors import RowError
from operators.loading import load_tokenizer
from operators.plan import ERROR, INPUT_IDS, TOKEN_TYPE_IDS, JobPlan

IDS_TYPE = pa.list_(pa.int32())


def _decode_utf8(value: bytes, column: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why) for bytes that are not UTF-8."""
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, (f"column {column!r} is not valid UTF-8 (byte {e.start}: "
                      f"{value[e.start:e.start + 4]!r}); re-encode the corpus as UTF-8")


def tokenize_batch(table: pa.Table, plan: JobPlan) -> pa.Table:
    spec = plan.spec
    tokenizer = load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
    values = {name: table.column(column).to_pylist() for name, column in plan.input_columns.items()}
    errors: list[str | None] = [None] * table.num_rows
    for name, column in plan.input_columns.items():
        for i, value in enumerate(values[name]):
            if value is None:
                errors[i] = errors[i] or f"column {column!r} is null"
            elif isinstance(value, bytes):
                values[name][i], problem = _decode_utf8(value, column)
                errors[i] = errors[i] or problem
    if spec.on_error == "raise" and any(errors):
        row = next(i for i, e in enumerate(errors) if e)
        row_id = table.column(plan.id_column)[row].as_py()
        raise RowError(f"row {plan.id_column}={row_id!r}: {errors[row]} (on_error: raise; set "
                       f"on_error: record to keep such rows with the error noted)")

    valid = [i for i, e in enumerate(errors) if e is None]
    input_ids: list = [None] * table.num_rows
    type_ids: list = [None] * table.num_rows
    if valid:
        texts = {name: [values[name][i] for i in valid] for name in values}
        encoded = plan.task.encode(tokenizer, texts, plan.options, plan.max_length)
        for k, i in enumerate(valid):
            input_ids[i] = encoded.input_ids[k]
            if encoded.token_type_ids is not None:
                type_ids[i] = encoded.token_type_ids[k]
    return (table.append_column(INPUT_IDS, pa.array(input_ids, IDS_TYPE))
                 .append_column(TOKEN_TYPE_IDS, pa.array(type_ids, IDS_TYPE))
                 .append_column(ERROR, pa.array(errors, pa.string())))
