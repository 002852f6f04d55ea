"""Tokenize operator: CPU tasks that turn text columns into windows of token ids.

Column contract
    in:  the reader's columns (id, task input columns as string or binary, kept columns)
    out: the same, plus
         _cm_input_ids       list<list<int32>>  the row's windows of token ids; null if it failed
         _cm_token_type_ids  list<list<int32>>  null when the tokenizer gives none
         _cm_extras          binary             pickled data the task's decode needs, or null
         _cm_truncated       bool               encode cut the row's input to the model window
         error               string             null, or why the row cannot be processed
"""
from __future__ import annotations

import pickle

import pyarrow as pa

from corpusmill.errors import RowError
from corpusmill.operators.loading import load_tokenizer
from corpusmill.operators.plan import ERROR, EXTRAS, INPUT_IDS, TOKEN_TYPE_IDS, TRUNCATED, JobPlan
from corpusmill.operators.stats import Timer, report

WINDOWS_TYPE = pa.list_(pa.list_(pa.int32()))


def _decode_utf8(value: bytes, column: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why) for bytes that are not UTF-8."""
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, (f"column {column!r} is not valid UTF-8 (byte {e.start}: "
                      f"{value[e.start:e.start + 4]!r}); re-encode the corpus as UTF-8")


def input_texts(table: pa.Table, plan: JobPlan) -> tuple[dict[str, list], list[str | None]]:
    """The task's input texts per input name (bytes decoded as UTF-8), and per row why it
    cannot be processed (null or undecodable input), else None."""
    values = {name: table.column(column).to_pylist() for name, column in plan.input_columns.items()}
    errors: list[str | None] = [None] * table.num_rows
    for name, column in plan.input_columns.items():
        for i, value in enumerate(values[name]):
            if value is None:
                errors[i] = errors[i] or f"column {column!r} is null"
            elif isinstance(value, bytes):
                values[name][i], problem = _decode_utf8(value, column)
                errors[i] = errors[i] or problem
    return values, errors


def raise_on_error(table: pa.Table, plan: JobPlan, errors: list[str | None]) -> None:
    """Under on_error: raise, stop at the first row with an error, naming it."""
    if plan.spec.on_error == "raise" and any(errors):
        row = next(i for i, e in enumerate(errors) if e)
        row_id = table.column(plan.id_column)[row].as_py()
        raise RowError(f"row {plan.id_column}={row_id!r}: {errors[row]} (on_error: raise; set "
                       f"on_error: record to keep such rows with the error noted)")


def tokenize_batch(table: pa.Table, plan: JobPlan) -> pa.Table:
    with Timer() as timer:
        out = _tokenize(table, plan)
    tokens = sum(len(w) for row in out.column(INPUT_IDS).to_pylist() if row for w in row)
    report(plan.stats_name, "tokenize", rows=table.num_rows, seconds=timer.seconds,
           tokens=tokens)
    return out


def _tokenize(table: pa.Table, plan: JobPlan) -> pa.Table:
    spec = plan.spec
    tokenizer = load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
    values, errors = input_texts(table, plan)
    raise_on_error(table, plan, errors)

    valid = [i for i, e in enumerate(errors) if e is None]
    windows: list = [None] * table.num_rows
    type_ids: list = [None] * table.num_rows
    extras: list = [None] * table.num_rows
    truncated: list = [False] * table.num_rows
    if valid:
        texts = {name: [values[name][i] for i in valid] for name in values}
        encoded = plan.task.encode(tokenizer, texts, plan.options, plan.max_length)
        for k, i in enumerate(valid):
            if encoded.errors is not None and encoded.errors[k]:
                errors[i] = encoded.errors[k]
                continue
            windows[i] = encoded.windows[k]
            if encoded.token_type_ids is not None:
                type_ids[i] = encoded.token_type_ids[k]
            if encoded.extras is not None:
                extras[i] = pickle.dumps(encoded.extras[k], protocol=pickle.HIGHEST_PROTOCOL)
            if encoded.truncated is not None:
                truncated[i] = bool(encoded.truncated[k])
        raise_on_error(table, plan, errors)
    return (table.append_column(INPUT_IDS, pa.array(windows, WINDOWS_TYPE))
                 .append_column(TOKEN_TYPE_IDS, pa.array(type_ids, WINDOWS_TYPE))
                 .append_column(EXTRAS, pa.array(extras, pa.binary()))
                 .append_column(TRUNCATED, pa.array(truncated, pa.bool_()))
                 .append_column(ERROR, pa.array(errors, pa.string())))
