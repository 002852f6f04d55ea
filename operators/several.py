"""Operators of a job with several tasks (operators/plan.py `SeveralPlan`): one read, then each
task's inference in its own actor pool, one after another on the same blocks, then one
postprocess that writes every task's columns side by side. Rows never leave their block, so
nothing is joined or shuffled: a row's outputs from every task meet in the block that carried
it through all the pools.

Column contract (between the operators; `<name>` a task, `<k>` a tokenization group)
    read:        the job's read schema (id, every task's input columns, kept columns)
    tokenize_group (a group's tokenization in tasks, when its actors do not tokenize):
                 adds _cm_g:<k>:<column> for each column tokenize adds (operators/tokenize.py)
    TaskStage:   adds _cm_t:<name>:<column> for each column its inference adds (extras,
                 truncated, the raw outputs, error: operators/infer.py); the first task of a
                 group that tokenizes in its actor adds the group's _cm_g: columns for the
                 others, and the group's last task drops them
    postprocess_several: exactly `SeveralPlan.output_schema`: id, kept columns, each task's
                 output columns and error as `<name>_<column>`, then `error`: null when every
                 task succeeded, else `<name>: <its error>` for each task that failed, `; `
                 between. Under on_error: skip, rows with any task's error are left out.
Each task's columns are what its own single-task job writes for the row (decode_block of its
plan over its own columns).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusmill.operators.infer import Infer
from corpusmill.operators.plan import (
    ERROR, INPUT_IDS, TOKEN_TYPE_IDS, JobPlan, SeveralPlan,
)
from corpusmill.operators.postprocess import decode_block
from corpusmill.operators.stats import Timer, report
from corpusmill.operators.tokenize import tokenize_batch
from corpusmill.operators.windows import Windows

TASK_PREFIX = "_cm_t:"
GROUP_PREFIX = "_cm_g:"


def task_prefix(name: str) -> str:
    return f"{TASK_PREFIX}{name}:"


def group_prefix(group: int) -> str:
    return f"{GROUP_PREFIX}{group}:"


def _with_prefix(table: pa.Table, added: pa.Table, prefix: str) -> pa.Table:
    """`table` with the columns of `added` appended, each named `prefix` + its name."""
    for name in added.column_names:
        table = table.append_column(f"{prefix}{name}", added.column(name))
    return table


def _without_prefix(table: pa.Table, prefix: str) -> pa.Table:
    """The columns of `table` under `prefix`, named without it."""
    names = [c for c in table.column_names if c.startswith(prefix)]
    return table.select(names).rename_columns([c[len(prefix):] for c in names])


def tokenize_group(table: pa.Table, plan: JobPlan, group: int) -> pa.Table:
    """A tokenization group's tokenize task: `plan` is its first task's (all its tasks
    tokenize alike); adds the group's columns."""
    base = table.select(plan.read_schema.names)
    tokenized = tokenize_batch(base, plan)
    added = tokenized.select(tokenized.column_names[base.num_columns:])
    return _with_prefix(table, added, group_prefix(group))


class TaskStage(Infer):
    """One task's inference actor in a job with several: `Infer` over the task's own view of
    the block (the read columns, and its group's token windows), its additions kept under its
    prefix. `group`: the task's tokenization group, None when it tokenizes alone;
    `shares`: it tokenizes (in this actor) for later tasks of its group; `last`: the group's
    columns are dropped after it."""

    def __init__(self, plan: JobPlan, name: str, group: int | None = None,
                 shares: bool = False, last: bool = False):
        super().__init__(plan, task_name=name)
        self.name, self.group, self.shares, self.last = name, group, shares, last

    def __call__(self, table: pa.Table) -> pa.Table:
        base = table.select(self.plan.read_schema.names)
        if self.plan.tokenize_in_actor:
            encoded = self.encode(base)
            view, windows = encoded.table, encoded.windows
            if self.shares:
                ids, type_ids = windows.to_arrow(encoded.valid)
                shared = encoded.table.select(encoded.table.column_names[base.num_columns:])
                shared = shared.append_column(INPUT_IDS, ids).append_column(TOKEN_TYPE_IDS,
                                                                             type_ids)
                table = _with_prefix(table, shared, group_prefix(self.group))
        else:
            tokens = _without_prefix(table, group_prefix(self.group))
            windows = Windows.from_arrow(tokens.column(INPUT_IDS), tokens.column(TOKEN_TYPE_IDS))
            view = _with_prefix(base, tokens.drop_columns([INPUT_IDS, TOKEN_TYPE_IDS]), "")
        out = self.run(view, windows)
        report(self.plan.stats_name, f"inference:{self.name}", rows=out.num_rows,
               seconds=self.seconds)
        if self.last and self.group is not None:
            prefix = group_prefix(self.group)
            table = table.drop_columns([c for c in table.column_names if c.startswith(prefix)])
        added = out.select(out.column_names[base.num_columns:])
        return _with_prefix(table, added, task_prefix(self.name))


def postprocess_several(table: pa.Table, plan: SeveralPlan) -> pa.Table:
    with Timer() as timer:
        out, failed = _join_outputs(table, plan)
    rows_out = out.num_rows
    if plan.spec.on_error == "skip":
        out = out.filter(pc.is_null(out.column(ERROR)))
    report(plan.stats_name, "postprocess", rows=table.num_rows, seconds=timer.seconds,
           rows_out=out.num_rows, errors=failed, skipped=rows_out - out.num_rows)
    return out


def _join_outputs(table: pa.Table, plan: SeveralPlan) -> tuple[pa.Table, int]:
    """Each task's decoded columns, prefixed, beside the id and kept columns; the joined
    error; the count of rows with any error."""
    base = table.select(plan.read_schema.names)
    arrays = [table.column(plan.id_column)] + [table.column(c) for c in plan.kept_columns]
    failed_by = []
    for name, task_plan in plan.tasks.items():
        ours = _with_prefix(base, _without_prefix(table, task_prefix(name)), "")
        decoded = decode_block(ours, task_plan, leave_out_errors=False)
        for field in task_plan.output_schema:
            if field.name in task_plan.task_output_names or field.name == ERROR:
                arrays.append(decoded.column(field.name))
        failed_by.append((name, decoded.column(ERROR)))
    error = _joined_error(failed_by, table.num_rows)
    arrays.append(error)
    schema = plan.output_schema
    arrays = [a.cast(f.type) if a.type != f.type else a for a, f in zip(arrays, schema)]
    return pa.Table.from_arrays(arrays, schema=schema), table.num_rows - error.null_count


def _joined_error(failed_by: list[tuple[str, pa.ChunkedArray]], rows: int) -> pa.Array:
    """`<name>: <error>` for each task that failed on the row, `; ` between; null if none."""
    failed = np.zeros(rows, dtype=bool)
    for _, errors in failed_by:
        failed |= errors.is_valid().to_numpy(zero_copy_only=False)
    if not failed.any():
        return pa.nulls(rows, pa.string())
    values: list[str | None] = [None] * rows
    lists = [(name, errors.to_pylist()) for name, errors in failed_by]
    for row in np.flatnonzero(failed).tolist():
        values[row] = "; ".join(f"{name}: {errors[row]}" for name, errors in lists
                                if errors[row] is not None)
    return pa.array(values, pa.string())
