"""The onnxruntime engine: the task's exported graph (`onnx_export.py`) in an ONNX Runtime
session (see `engines.py`). The actor imports neither torch nor transformers: the graph holds
the model and the task's reductions, `task.finish` is numpy, and the padding id comes with
the plan. Where the node's cache lacks the graph (a cluster without a shared cache), the
actor builds it first, as the driver did."""
from __future__ import annotations

import logging
import os

import numpy as np

from corpusmill.operators.engines.onnx_export import is_built, open_session, run_build
from corpusmill.operators.plan import JobPlan

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, plan: JobPlan):
        import onnxruntime as ort

        self.plan = plan
        graph = plan.graph
        if not is_built(graph.folder):
            log.warning("ONNX graph %s is not in this node's cache; building it", graph.folder)
            run_build({**graph.request, "agreement": False})
        providers = ["CPUExecutionProvider"]
        if plan.num_gpus > 0 and CUDA in ort.get_available_providers():
            providers.insert(0, CUDA)
        self.session = open_session(graph.path, threads=plan.torch_threads, providers=providers)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.pad_id = plan.pad_id
        log.info("onnxruntime engine pid=%s loaded %s (%s)", os.getpid(), graph.path,
                 self.session.get_providers()[0])

    def forward(self, arrays: dict[str, np.ndarray], **extra) -> dict[str, np.ndarray]:
        feed = {k: v for k, v in arrays.items() if k in self.inputs}
        raw = dict(zip(self.outputs, self.session.run(None, feed)))
        return self.plan.task.finish(raw, self.plan.options)

    def combine_windows(self, outputs: dict) -> dict:
        return outputs  # graph tasks have no second pass
