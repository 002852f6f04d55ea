"""Task workers without torch.

The tokenize and postprocess tasks need a tokenizer and numpy, never torch, yet transformers
imports torch whenever it is installed: about 170 MB more in every worker process that ran
one of them (140 MB against 311 MB measured in a Ray worker for a BERT tokenizer). Their
tasks run in a Ray runtime env of their own (`runtime_env()`: an environment variable), so
Ray starts worker processes for them that it never hands to an inference actor (which needs
torch). In those processes, importing `corpusmill.operators` (the first thing a task's
function or its pickled plan imports) hides torch from transformers, as on a machine
without it."""
from __future__ import annotations

import os
import sys

TORCH_FREE = "CORPUSMILL_TORCH_FREE"


def runtime_env() -> dict:
    """Task options' runtime env for torch-free workers."""
    # transformers' one-line advice that it found no torch is expected here
    return {"env_vars": {TORCH_FREE: "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}}


def hide_torch_if_asked() -> None:
    """In a torch-free worker, make `import torch` fail and `importlib.util.find_spec("torch")`
    return None (how transformers asks), unless torch is loaded already."""
    if os.environ.get(TORCH_FREE) == "1" and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]
