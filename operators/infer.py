"""Inference operator: an actor that loads the model once and runs it on token-budget batches.

Column contract
    in:  tokenize's output (_cm_input_ids, _cm_token_type_ids, _cm_extras, error, ...)
    out: the same without the token columns, plus
         _cm_raw  binary  pickled list, one entry per window of the row, of the task's raw
                          outputs (name -> numpy array); null for rows with an error
         a row whose forward pass fails gets `error` set (or stops the job under on_error: raise)

Within one block (the batch Ray hands over), the windows of all rows are sorted by length and
cut into micro-batches of at most `batching.max_tokens` padded tokens (a window counts as
`task.window_cost` tokens: generation adds the tokens it will generate), padded on the task's
`padding_side` (left for decoder-only generation). A micro-batch that
raises is split in halves until the failing window is alone, so one poisonous row never takes
its neighbours with it. The model runs in an engine (`engines.py`): torch, or onnxruntime.
"""
from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pyarrow as pa

from corpusmill.errors import RowError
from corpusmill.operators.batching import pad, plan_microbatches
from corpusmill.operators.engines import make_engine
from corpusmill.operators.plan import ERROR, INPUT_IDS, RAW, TOKEN_TYPE_IDS, JobPlan
from corpusmill.operators.stats import Timer, announce_actor, node_id, report

log = logging.getLogger(__name__)


class Infer:
    def __init__(self, plan: JobPlan):
        self.plan = plan
        self.engine = make_engine(plan)
        self.pad_id = self.engine.pad_id
        self.device = getattr(self.engine, "device", "cpu")
        log.info("Infer actor pid=%s runs %s on %s", os.getpid(), plan.model_ref,
                 self.engine.name)
        self.actor_key = announce_actor(plan.stats_name, self.device)
        self.node = node_id()
        self.padded_tokens = 0  # (rows x longest) of the forward passes of the current block

    def __call__(self, table: pa.Table) -> pa.Table:
        self.padded_tokens = 0
        with Timer() as timer:
            out = self._infer(table)
        windows = [w for row in table.column(INPUT_IDS).to_pylist() if row for w in row]
        report(self.plan.stats_name, "inference", actor=self.actor_key, node=self.node,
               device=self.device, rows=table.num_rows, seconds=timer.seconds,
               windows=len(windows), tokens=sum(len(w) for w in windows),
               padded_tokens=self.padded_tokens)
        return out

    def _infer(self, table: pa.Table) -> pa.Table:
        errors = table.column(ERROR).to_pylist()
        row_windows = table.column(INPUT_IDS).to_pylist()
        row_type_ids = table.column(TOKEN_TYPE_IDS).to_pylist()
        # every window of every valid row, as (row, window index, ids, type ids)
        windows = [(row, w, ids, None if row_type_ids[row] is None else row_type_ids[row][w])
                   for row, e in enumerate(errors) if e is None
                   for w, ids in enumerate(row_windows[row])]
        results: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        task, options = self.plan.task, self.plan.options
        for micro in plan_microbatches([task.window_cost(len(w[2]), options) for w in windows],
                                       self.plan.spec.batching.max_tokens):
            self._run_isolating([windows[k] for k in micro], results, errors, table)
        by_row = {row: [results[(row, w)] for w in range(len(row_windows[row]))]
                  for row, e in enumerate(errors) if e is None}
        if by_row:
            by_row = self.engine.combine_windows(by_row)
        raw: list = [None] * table.num_rows
        for row, outputs in by_row.items():
            if isinstance(outputs, str):
                errors[row] = outputs
                if self.plan.spec.on_error == "raise":
                    raise RowError(f"row {self.plan.id_column}="
                                   f"{table.column(self.plan.id_column)[row].as_py()!r}: "
                                   f"{outputs} (on_error: raise)")
            else:
                raw[row] = pickle.dumps(outputs, protocol=pickle.HIGHEST_PROTOCOL)
        table = table.drop_columns([INPUT_IDS, TOKEN_TYPE_IDS, ERROR])
        return (table.append_column(RAW, pa.array(raw, pa.binary()))
                     .append_column(ERROR, pa.array(errors, pa.string())))

    def _run_isolating(self, batch, results, errors, table):
        try:
            outputs = self._forward(batch, table)
        except Exception as e:  # noqa: BLE001 - any failure is narrowed to its row
            if len(batch) > 1:
                half = len(batch) // 2
                self._run_isolating(batch[:half], results, errors, table)
                self._run_isolating(batch[half:], results, errors, table)
                return
            row = batch[0][0]
            row_id = table.column(self.plan.id_column)[row].as_py()
            message = f"inference failed: {type(e).__name__}: {e}"
            if self.plan.spec.on_error == "raise":
                raise RowError(f"row {self.plan.id_column}={row_id!r}: {message}") from e
            errors[row] = message
            return
        token_outputs = self.plan.task.token_outputs
        left = self.plan.task.padding_side == "left"
        for k, (row, w, ids, _) in enumerate(batch):
            results[(row, w)] = {name: _own_tokens(array[k], len(ids), left)
                                 if name in token_outputs else array[k]
                                 for name, array in outputs.items()}

    def _forward(self, batch, table) -> dict[str, np.ndarray]:
        task = self.plan.task
        side = task.padding_side
        input_ids, mask = pad([w[2] for w in batch], self.pad_id, side)  # (batch, seq)
        self.padded_tokens += input_ids.size
        arrays = {"input_ids": input_ids, "attention_mask": mask}
        if batch[0][3] is not None:
            arrays["token_type_ids"] = pad([w[3] for w in batch], 0, side)[0]
        extra = {}
        if task.uses_row_keys:
            ids = table.column(self.plan.id_column)
            extra["row_keys"] = [str(ids[w[0]].as_py()) for w in batch]
        return self.engine.forward(arrays, **extra)


def _own_tokens(array: np.ndarray, length: int, left_padded: bool) -> np.ndarray:
    """A window's own positions of a (seq, ...) token output: the first `length` when right-
    padded, the last `length` when left-padded."""
    return array[array.shape[0] - length:] if left_padded else array[:length]
