"""The torch engine: the transformers model in eager mode, on CPU or GPU (see `engines.py`)."""
from __future__ import annotations

import logging
import os

import numpy as np

from corpusmill.operators.loading import load_model, load_tokenizer, local_model, torch_dtype
from corpusmill.operators.plan import JobPlan

log = logging.getLogger(__name__)


class TorchEngine:
    name = "torch"

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
        self.pad_id = pad_id(self.tokenizer, self.model.config)
        with torch.inference_mode():
            self.state = plan.task.prepare(self.model, self.tokenizer, plan.options,
                                           local_model(plan.model_ref), spec.revision)
        log.info("torch engine pid=%s loaded %s on %s", os.getpid(), plan.model_ref, self.device)

    def forward(self, arrays: dict[str, np.ndarray], **extra) -> dict[str, np.ndarray]:
        import torch

        if self.device == "cpu":
            tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        else:  # pinned host memory lets the copy to the GPU run asynchronously
            tensors = {k: torch.from_numpy(v).pin_memory().to(self.device, non_blocking=True)
                       for k, v in arrays.items()}
        with torch.inference_mode():
            return self.plan.task.forward(self.model, tensors, self.state, self.plan.options,
                                          **extra)

    def combine_windows(self, outputs: dict) -> dict:
        import torch

        with torch.inference_mode():
            return self.plan.task.combine_windows(self.model, self.tokenizer, self.state,
                                                  self.plan.options, self.plan.max_length,
                                                  outputs, self.device)


def pad_id(tokenizer, config) -> int:
    for candidate in (tokenizer.pad_token_id, getattr(config, "pad_token_id", None),
                      tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
