"""Inference operator: an actor that loads the model once and runs it on token-budget batches.

Column contract
    in:  tokenize's output (_cm_input_ids, _cm_token_type_ids, _cm_extras, error, ...), or,
         when the plan tokenizes in the actor (`JobPlan.tokenize_in_actor`), the reader's
         columns, tokenized here by the same `encode_block` the tokenize tasks run
    out: the same without the token columns, plus the raw outputs: for tasks with
         `typed_outputs`, typed columns (operators/raw_outputs.py: _cm_window_lengths and one
         _cm_raw:<name>:... column per output); for the others
         _cm_raw  binary  pickled list, one entry per window of the row, of the task's raw
                          outputs (name -> numpy array); null for rows with an error
         a row whose forward pass fails gets `error` set (or stops the job under on_error: raise)

Within one block (the batch Ray hands over), the windows of all rows are sorted by length and
cut into micro-batches of at most `batching.max_tokens` padded tokens (a window counts as
`task.window_cost` tokens: generation adds the tokens it will generate), padded on the task's
`padding_side` (left for decoder-only generation). Windows stay in flat arrays
(operators/windows.py); padding and the outputs' hand-back are numpy operations, with no
per-row Python for tasks with typed outputs. A micro-batch that raises is split in halves
until the failing window is alone, so one poisonous row never takes its neighbours with it.
The model runs in an engine (`engines.py`): torch, or onnxruntime.
"""
from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pyarrow as pa

from corpusmill.errors import RowError
from corpusmill.operators.batching import plan_microbatches
from corpusmill.operators.engines import make_engine
from corpusmill.operators.plan import ERROR, INPUT_IDS, RAW, TOKEN_TYPE_IDS, JobPlan
from corpusmill.operators.raw_outputs import OutputCollector
from corpusmill.operators.stats import Timer, announce_actor, node_id, report
from corpusmill.operators.tokenize import EncodedBlock, encode_block
from corpusmill.operators.windows import Windows

log = logging.getLogger(__name__)


class Infer:
    def __init__(self, plan: JobPlan, task_name: str = ""):
        if plan.tokenize_in_actor and plan.torch_threads <= 1 and not plan.num_gpus:
            # one core per actor: the fast tokenizer's own thread pool would only contend
            # with the forward passes and with the other actors
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.plan = plan
        self.task = plan.task
        self.engine = make_engine(plan)
        self.pad_id = self.engine.pad_id
        self.device = getattr(self.engine, "device", "cpu")
        log.info("Infer actor pid=%s runs %s on %s", os.getpid(), plan.model_ref,
                 self.engine.name)
        self.actor_key = announce_actor(plan.stats_name, self.device, task_name)
        self.node = node_id()
        self.padded_tokens = 0  # (rows x longest) of the forward passes of the current block
        self.seconds = 0.0      # inference time of the last block

    def __call__(self, table: pa.Table) -> pa.Table:
        table, windows = self.windows_of(table)
        return self.run(table, windows)

    def windows_of(self, table: pa.Table) -> tuple[pa.Table, Windows]:
        """The block's token windows, and the block without token columns (with extras,
        truncated and error): tokenized here (`plan.tokenize_in_actor`) or read from the
        tokenize tasks' columns."""
        if self.plan.tokenize_in_actor:
            encoded = self.encode(table)
            return encoded.table, encoded.windows
        windows = Windows.from_arrow(table.column(INPUT_IDS), table.column(TOKEN_TYPE_IDS))
        return table.drop_columns([INPUT_IDS, TOKEN_TYPE_IDS]), windows

    def encode(self, table: pa.Table) -> EncodedBlock:
        with Timer() as timer:
            encoded = encode_block(table, self.plan)
        report(self.plan.stats_name, "tokenize", rows=table.num_rows,
               seconds=timer.seconds, tokens=len(encoded.windows.ids))
        return encoded

    def run(self, table: pa.Table, windows: Windows) -> pa.Table:
        """The model over `windows`; `table` with the raw outputs added (the contract above)."""
        self.padded_tokens = 0
        with Timer() as timer:
            out = self._infer(table, windows)
        self.seconds = timer.seconds
        report(self.plan.stats_name, "inference", actor=self.actor_key, node=self.node,
               device=self.device, rows=table.num_rows, seconds=timer.seconds,
               windows=windows.num_windows, tokens=len(windows.ids),
               padded_tokens=self.padded_tokens)
        return out

    def _infer(self, table: pa.Table, windows: Windows) -> pa.Table:
        errors = table.column(ERROR).to_pylist()
        task, options = self.task, self.plan.options
        window_rows = windows.window_rows
        typed = task.typed_outputs
        collector = OutputCollector(windows, task.token_outputs) if typed else None
        results: dict[int, dict[str, np.ndarray]] = {}  # untyped: window -> raw outputs
        costs = task.window_cost(windows.lengths, options)
        for micro in plan_microbatches(costs, self.plan.spec.batching.max_tokens):
            self._run_isolating(micro, windows, window_rows, collector, results, errors, table)
        valid = np.array([e is None for e in errors], dtype=bool)
        table = table.drop_columns([ERROR])
        if typed:
            for name, column in collector.columns(valid).items():
                table = table.append_column(name, column)
            return table.append_column(ERROR, pa.array(errors, pa.string()))
        by_row = {row: [results[w] for w in range(windows.row_offsets[row],
                                                  windows.row_offsets[row + 1])]
                  for row in np.flatnonzero(valid).tolist()}
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
        return (table.append_column(RAW, pa.array(raw, pa.binary()))
                     .append_column(ERROR, pa.array(errors, pa.string())))

    def _run_isolating(self, micro, windows, window_rows, collector, results, errors, table):
        try:
            arrays = windows.pad(micro, self.pad_id, self.task.padding_side)
            outputs = self._forward(arrays, micro, window_rows, table)
        except Exception as e:  # noqa: BLE001 - any failure is narrowed to its row
            if len(micro) > 1:
                half = len(micro) // 2
                for part in (micro[:half], micro[half:]):
                    self._run_isolating(part, windows, window_rows, collector, results, errors,
                                        table)
                return
            row = int(window_rows[micro[0]])
            row_id = table.column(self.plan.id_column)[row].as_py()
            message = f"inference failed: {type(e).__name__}: {e}"
            if self.plan.spec.on_error == "raise":
                raise RowError(f"row {self.plan.id_column}={row_id!r}: {message}") from e
            errors[row] = message
            return
        mask = arrays["attention_mask"].astype(bool)
        if collector is not None:
            collector.add(micro, outputs, mask)
            return
        token_outputs = self.task.token_outputs
        for k, window in enumerate(micro.tolist()):
            results[window] = {name: array[k][:mask.shape[1]][mask[k]]
                               if name in token_outputs else array[k]
                               for name, array in outputs.items()}

    def _forward(self, arrays, micro, window_rows, table) -> dict[str, np.ndarray]:
        self.padded_tokens += arrays["input_ids"].size
        extra = {}
        if self.task.uses_row_keys:
            ids = table.column(self.plan.id_column)
            extra["row_keys"] = [str(ids[int(window_rows[w])].as_py()) for w in micro]
        return self.engine.forward(arrays, **extra)
