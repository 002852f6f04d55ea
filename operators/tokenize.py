"""Tokenize operator: CPU tasks that turn text columns into windows of token ids (or the same
step inside the inference actors, `encode_block`, when the plan says so: jobs/run.py).

Column contract
    in:  the reader's columns (id, task input columns as string or binary, kept columns)
    out: the same, plus
         _cm_input_ids       list<list<int32>>  the row's windows of token ids; null if it failed
         _cm_token_type_ids  list<list<int32>>  null when the tokenizer gives none
         _cm_extras          binary             pickled data the task's decode needs, or null
                                                (always null for tasks without extras)
         _cm_truncated       bool               encode cut the row's input to the model window
         error               string             null, or why the row cannot be processed
The token columns are built from flat buffers (operators/windows.py), never row by row.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from corpusmill.errors import RowError
from corpusmill.operators.loading import load_tokenizer
from corpusmill.operators.plan import ERROR, EXTRAS, INPUT_IDS, TOKEN_TYPE_IDS, TRUNCATED, JobPlan
from corpusmill.operators.stats import Timer, report
from corpusmill.operators.windows import Windows


def _decode_utf8(value: bytes, column: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why) for bytes that are not UTF-8."""
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, (f"column {column!r} is not valid UTF-8 (byte {e.start}: "
                      f"{value[e.start:e.start + 4]!r}); re-encode the corpus as UTF-8")


def input_texts(table: pa.Table, plan: JobPlan) -> tuple[dict[str, list], list[str | None]]:
    """The task's input texts per input name (bytes decoded as UTF-8), and per row why it
    cannot be processed (null or undecodable input), else None. Rows are looked at one by one
    only in a column that has nulls or holds bytes."""
    values = {name: table.column(column).to_pylist() for name, column in plan.input_columns.items()}
    errors: list[str | None] = [None] * table.num_rows
    for name, column in plan.input_columns.items():
        data = table.column(column)
        if data.null_count == 0 and not pa.types.is_binary(data.type) \
                and not pa.types.is_large_binary(data.type):
            continue
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
        encoded = encode_block(table, plan)
        ids, type_ids = encoded.windows.to_arrow(encoded.valid)
        out = (encoded.table.append_column(INPUT_IDS, ids)
                            .append_column(TOKEN_TYPE_IDS, type_ids))
    report(plan.stats_name, "tokenize", rows=table.num_rows, seconds=timer.seconds,
           tokens=len(encoded.windows.ids))
    return out


@dataclass
class EncodedBlock:
    """A block after tokenization: `table` holds its columns plus extras, truncated and error;
    `windows` the token windows of its rows (none for a row with an error)."""
    table: pa.Table
    windows: Windows

    @property
    def valid(self) -> np.ndarray:
        return self.table.column(ERROR).is_null().to_numpy(zero_copy_only=False)


def encode_block(table: pa.Table, plan: JobPlan) -> EncodedBlock:
    """Tokenize a block of the reader's rows with the task's `encode`."""
    spec = plan.spec
    tokenizer = load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
    values, errors = input_texts(table, plan)
    raise_on_error(table, plan, errors)

    valid = [i for i, e in enumerate(errors) if e is None]
    windows: list = [None] * table.num_rows
    type_ids: list | None = None
    extras: list = [None] * table.num_rows
    truncated = np.zeros(table.num_rows, dtype=bool)
    if valid:
        all_valid = len(valid) == table.num_rows
        texts = values if all_valid else {name: [values[name][i] for i in valid]
                                          for name in values}
        encoded = plan.task.encode(tokenizer, texts, plan.options, plan.max_length)
        if all_valid and encoded.errors is None:
            windows = encoded.windows  # the common case: every row as encode gave it
            type_ids = encoded.token_type_ids
            if encoded.extras is not None:
                extras = [pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL) for e in
                          encoded.extras]
            if encoded.truncated is not None:
                truncated = np.asarray(encoded.truncated, dtype=bool)
        else:
            if encoded.token_type_ids is not None:
                type_ids = [None] * table.num_rows
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
    out = (table.append_column(EXTRAS, pa.array(extras, pa.binary()))
                .append_column(TRUNCATED, pa.array(truncated, pa.bool_()))
                .append_column(ERROR, pa.array(errors, pa.string())))
    return EncodedBlock(out, Windows.from_lists(windows, type_ids))
