"""Finding and loading models and tokenizers, safely by default: safetensors weights only unless
the spec allows pickle, no checkpoint code unless the spec trusts it."""
from __future__ import annotations

import functools
import importlib.util
import os

from jobs.errors import JobError

PACKAGE_SCHEME = "package:"


def resolve_model_ref(model: str) -> str:
    """The string `from_pretrained` takes: `package:MODULE/SUBDIR` becomes the folder SUBDIR
    inside the installed package MODULE; folders and hub ids pass through."""
    if not model.startswith(PACKAGE_SCHEME):
        return model
    module, _, subdir = model[len(PACKAGE_SCHEME):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise JobError(f"model {model!r}: no installed Python package {module!r}; install it "
                       f"(e.g. pip install {module.replace('_', '-')}) or give a model folder")
    folder = os.path.join(list(spec.submodule_search_locations)[0], subdir)
    if not os.path.isdir(folder):
        raise JobError(f"model {model!r}: package {module!r} has no folder {subdir!r}")
    return folder


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_ref: str, revision: str | None, trust_remote_code: bool):
    """The model's tokenizer, cached per process (tokenize tasks reuse their worker)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_ref, revision=revision,
                                         trust_remote_code=trust_remote_code)


INT8 = "int8"


def load_model(model_class, model_ref: str, revision: str | None, *, dtype, device: str,
               trust_remote_code: bool, allow_pickle: bool):
    """Weights on `device` in eval mode. Without `allow_pickle`, only safetensors load.
    `dtype` is a torch dtype, None (the checkpoint's), or "int8": float32 weights whose Linear
    layers are then quantised dynamically (CPU only)."""
    import torch

    if dtype == INT8 and device != "cpu":
        raise ValueError("dtype int8 is dynamic quantisation for CPUs; on a GPU use float16")
    model = model_class.from_pretrained(
        model_ref, revision=revision, dtype=torch.float32 if dtype == INT8 else dtype,
        trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True)
    model = model.to(device).eval()
    if dtype == INT8:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # one scale per output channel: labels agreed with float32 on 98.0% of a 3,000-row
        # sample against 97.0% with one scale per tensor, at the same speed (bench/RESULTS.md)
        model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                 dtype=torch.qint8)
    return model


def torch_dtype(name: str, device: str):
    """`auto` is float16 on GPU and float32 on CPU (these CPUs have no fast bf16/fp16)."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if name == INT8:
        return INT8
    return getattr(torch, name)
