"""Inference operator: an actor that loads the model once and runs it on token-budget batches.

Column contract
    in:  tokenize's output (_cm_input_ids, _cm_token_type_ids, error, ...)
    out: the same without the token columns, plus one `_cm_raw_<name>` list<float32> column per
         raw output of the task's forward pass (null for rows with an error); a row whose
         forward pass fails gets `error` set (or stops the job under on_error: raise)

Within one window (the batch Ray hands over), rows are sorted by length and cut into
micro-batches of at most `batching.max_tokens` padded tokens. A micro-batch that raises is
split in halves until the failing row is alone, so one poisonous row never takes its
neighbours with it.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa

from jobs.errors import RowError
from operators.batching import pad, plan_microbatches
from operators.loading import load_model, load_tokenizer, torch_dtype
from operators.plan import ERROR, INPUT_IDS, RAW_PREFIX, TOKEN_TYPE_IDS, JobPlan

log = logging.getLogger(__name__)


class Infer:
    def __init__(self, plan: JobPlan):
        import torch

        self.plan = plan
        spec = plan.spec
        use_gpu = plan.num_gpus > 0 and torch.cuda.is_available()
        self.device = "cuda" if use_gpu else "cpu"
        if not use_gpu:
            torch.set_num_threads(plan.torch_threads)
        self.tokenizer = load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
        self.model = load_model(
            plan.task.model_class(), plan.model_ref, spec.revision,
            dtype=torch_dtype(spec.resources.dtype, self.device), device=self.device,
            trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
        self.pad_id = _pad_id(self.tokenizer, self.model.config)
        with torch.inference_mode():
            self.state = plan.task.prepare(self.model, self.tokenizer, plan.options,
                                           plan.model_ref, spec.revision)
        log.info("Infer actor pid=%s loaded %s on %s", os.getpid(), plan.model_ref, self.device)

    def __call__(self, table: pa.Table) -> pa.Table:
        errors = table.column(ERROR).to_pylist()
        ids = table.column(INPUT_IDS).to_pylist()
        type_ids = table.column(TOKEN_TYPE_IDS).to_pylist()
        valid = [i for i, e in enumerate(errors) if e is None]
        outputs: dict[str, list] = {}
        lengths = [len(ids[i]) for i in valid]
        for micro in plan_microbatches(lengths, self.plan.spec.batching.max_tokens):
            rows = [valid[k] for k in micro]
            self._run_isolating(rows, ids, type_ids, outputs, errors, table)
        table = table.drop_columns([INPUT_IDS, TOKEN_TYPE_IDS, ERROR])
        for name, values in outputs.items():
            table = table.append_column(RAW_PREFIX + name, pa.array(values, pa.list_(pa.float32())))
        return table.append_column(ERROR, pa.array(errors, pa.string()))

    def _run_isolating(self, rows, ids, type_ids, outputs, errors, table):
        try:
            result = self._forward(rows, ids, type_ids)
        except Exception as e:  # noqa: BLE001 - any failure is narrowed to its row
            if len(rows) > 1:
                half = len(rows) // 2
                self._run_isolating(rows[:half], ids, type_ids, outputs, errors, table)
                self._run_isolating(rows[half:], ids, type_ids, outputs, errors, table)
                return
            row_id = table.column(self.plan.id_column)[rows[0]].as_py()
            message = f"inference failed: {type(e).__name__}: {e}"
            if self.plan.spec.on_error == "raise":
                raise RowError(f"row {self.plan.id_column}={row_id!r}: {message}") from e
            errors[rows[0]] = message
            return
        for name, array in result.items():
            column = outputs.setdefault(name, [None] * len(errors))
            for k, row in enumerate(rows):
                column[row] = array[k].reshape(-1)

    def _forward(self, rows, ids, type_ids) -> dict[str, np.ndarray]:
        import torch

        input_ids, mask = pad([ids[r] for r in rows], self.pad_id)  # (batch, seq)
        tensors = {"input_ids": input_ids, "attention_mask": mask}
        if type_ids[rows[0]] is not None:
            tensors["token_type_ids"] = pad([type_ids[r] for r in rows], 0)[0]
        if self.device == "cpu":
            tensors = {k: torch.from_numpy(v) for k, v in tensors.items()}
        else:  # pinned host memory lets the copy to the GPU run asynchronously
            tensors = {k: torch.from_numpy(v).pin_memory().to(self.device, non_blocking=True)
                       for k, v in tensors.items()}
        with torch.inference_mode():
            return self.plan.task.forward(self.model, tensors, self.state, self.plan.options)


def _pad_id(tokenizer, config) -> int:
    for candidate in (tokenizer.pad_token_id, getattr(config, "pad_token_id", None),
                      tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
