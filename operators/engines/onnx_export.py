"""A task's forward pass exported once to ONNX, and the cache that keeps the graphs.

A graph is `task.graph_forward` (the model call and the task's reductions: top-k, pooling,
label similarities) traced by `torch.onnx.export(dynamo=False, opset_version=17)` with the
model's attention in eager form, then, for BERT-like encoders, ONNX Runtime's transformer
fusions (attention, layer norms, GELU: `_fuse`) where the fused graph still equals torch. Inputs:
`input_ids`, `attention_mask` and, when the tokenizer makes them, `token_type_ids` (int64,
(batch, seq), both axes dynamic); outputs: the task's raw outputs by name (before `finish`).

Cache: `$CORPUSMILL_CACHE/onnx/` (default `~/.cache/corpusmill/onnx/`), one folder per
(model content hash, task, the task's `graph_options` values, dtype and int8 scheme, exporter
version), holding `model.onnx` and `graph.json` (what it was made from; written last). A
folder is built under a temporary name beside it and renamed into place, so no reader sees
half a graph, and two processes building the same graph at once both succeed (the later
rename finds the folder there and keeps it). Every node reads the cache or builds it.

An export is checked before it is kept: on batches of other shapes than the one traced
(windows drawn from the corpus), the graph's outputs must equal torch's (max |diff| <= 1e-3
of the output's scale; integer outputs on >= 99% of entries), else it fails: a trace can bake
a shape or a branch into the graph.

`python -m corpusmill.operators.engines.onnx_export REQUEST.json` does the work in a child process
(`build`), so torch and a second copy of the model never sit in the driver's memory; it
prints one JSON line (what it built, and for int8 the agreement with float32 on the sample).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np

from corpusmill.operators.batching import pad, plan_microbatches
from corpusmill.operators.loading import cache_root

OPSET = 17
FORMAT = 2  # bump when what an exported folder holds changes (2: transformer fusions)
GRAPH_FILE = "model.onnx"
PLAIN_FILE = "plain.onnx"  # the graph before fusions, where they were applied: int8 starts here
INFO_FILE = "graph.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# encoders whose exported graphs ONNX Runtime's "bert" optimizer fuses (`_fuse`)
FUSABLE = {"bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet",
           "albert"}


class ExportFailed(RuntimeError):
    """The graph could not be exported, quantised, or checked; the message says why."""


@dataclass(frozen=True)
class GraphRef:
    """Which graph an onnxruntime actor loads, and how to build it where the cache lacks it
    (another node): `request` is what `build` takes."""

    folder: str            # under cache_root("onnx")
    request: dict
    agreement: dict | None = None  # int8: `agreement()` on the corpus sample, for the record

    @property
    def path(self) -> str:
        return os.path.join(cache_root("onnx"), self.folder, GRAPH_FILE)


def exporter_version() -> str:
    return f"torch-{importlib.metadata.version('torch')}-opset{OPSET}-f{FORMAT}"


def model_digest(model_ref: str, revision: str | None) -> str:
    """sha256 of the model folder's files (top level, and JSON files one folder down, where
    sentence-transformers keeps its pooling config). A hub id is hashed from its locally cached
    snapshot, else by name and revision; a folder on object storage from its local copy."""
    from corpusmill.operators.loading import is_remote, local_model

    if is_remote(model_ref):
        model_ref = local_model(model_ref)
    folder = model_ref if os.path.isdir(model_ref) else _hub_snapshot(model_ref, revision)
    if folder is None:
        return hashlib.sha256(f"hub:{model_ref}@{revision}".encode()).hexdigest()
    files = _model_files(folder)
    # the files' names, sizes and modification times: while they stay the same, the digest
    # computed before is reused (hashing a large model on every run would cost seconds)
    signature = [[os.path.relpath(p, folder), os.stat(p).st_size, os.stat(p).st_mtime_ns]
                 for p in files]
    memo = os.path.join(cache_root("onnx"), ".digests", hashlib.sha256(
        os.path.realpath(folder).encode()).hexdigest()[:24] + ".json")
    try:
        with open(memo, encoding="utf-8") as f:
            known = json.load(f)
        if known["signature"] == signature:
            return known["digest"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.path.relpath(path, folder).encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    try:
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(memo), delete=False) as f:
            json.dump({"signature": signature, "digest": digest.hexdigest()}, f)
        os.replace(f.name, memo)
    except OSError:  # a read-only cache still works, without the shortcut
        pass
    return digest.hexdigest()


def _model_files(folder: str) -> list[str]:
    paths = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith("."):
            continue
        if os.path.isfile(path):
            paths.append(path)
        elif os.path.isdir(path):
            paths += [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".json")]
    return paths


def _hub_snapshot(model_ref: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_ref, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached locally: keyed by name
        return None


def graph_folder(model_ref: str, revision: str | None, task, options, dtype: str,
                 scheme: str | None = None) -> str:
    """The cache folder name of a graph: readable prefix, then the hash of what made it."""
    identity = {"model": model_digest(model_ref, revision), "task": task.name,
                "graph_options": {name: getattr(options, name) for name in task.graph_options},
                "dtype": dtype, "scheme": scheme, "exporter": exporter_version()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(model_ref.rstrip("/")))[:40]
    return f"{stem}-{task.name}-{dtype}-{key}"


def is_built(folder: str) -> bool:
    return os.path.isfile(os.path.join(cache_root("onnx"), folder, INFO_FILE))


def run_build(request: dict, timeout: float | None = None) -> dict:
    """`build(request)` in a child process; its result, or ExportFailed with its reason."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(request, f)
    try:
        proc = subprocess.run([sys.executable, "-m", "corpusmill.operators.engines.onnx_export", f.name],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(f.name)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ExportFailed(why)
    result = json.loads(lines[-1])
    if "error" in result:
        raise ExportFailed(result["error"])
    return result


# ------------------------------------------------------------------ the work (child process)

def build(request: dict) -> dict:
    """Build what `request` names and is not in the cache yet (the float32 graph, then the int8
    one), and for int8 measure agreement with float32 on the sample. Returns what was done."""
    result: dict = {"built": []}
    start = time.monotonic()
    if not is_built(request["fp32_folder"]):
        _publish(request["fp32_folder"], lambda work: export(request, work))
        result["built"].append(request["fp32_folder"])
    if request.get("int8_folder"):
        from corpusmill.operators.engines.onnx_quantize import quantize

        fp32 = os.path.join(cache_root("onnx"), request["fp32_folder"], GRAPH_FILE)
        plain = os.path.join(cache_root("onnx"), request["fp32_folder"], PLAIN_FILE)
        if not is_built(request["int8_folder"]):
            # onnxruntime's quantiser does not take the fused operators: it quantises the
            # plain graph (its MatMuls), and the session fuses what it can when it loads
            _publish(request["int8_folder"], lambda work: quantize(
                plain if os.path.exists(plain) else fp32, os.path.join(work, GRAPH_FILE),
                request["scheme"], sample_batches(request)))
            result["built"].append(request["int8_folder"])
        if request.get("agreement"):
            int8 = os.path.join(cache_root("onnx"), request["int8_folder"], GRAPH_FILE)
            result["agreement"] = agreement(fp32, int8, request)
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def _publish(folder: str, make) -> None:
    """Run `make(work_folder)`, then rename the work folder to `folder` in one step."""
    root = cache_root("onnx")
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{folder}-", dir=root)
    os.chmod(work, 0o755)  # mkdtemp's 0o700 would hide the graph from other users of the cache
    try:
        info = make(work) or {}
        with open(os.path.join(work, INFO_FILE), "w") as f:
            json.dump({**info, "exporter": exporter_version()}, f, indent=1)
        try:
            os.rename(work, os.path.join(root, folder))
        except OSError:  # another process published it first
            if not is_built(folder):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sample_batches(request: dict, max_tokens: int = 512, limit: int | None = None) -> list[dict]:
    """The sample windows as padded batches (numpy int64), shortest first."""
    windows, types = request["sample"]["windows"], request["sample"]["type_ids"]
    batches = []
    for micro in plan_microbatches([len(w) for w in windows], max_tokens)[:limit]:
        ids, mask = pad([windows[i] for i in micro], request["pad_id"])
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = pad([types[i] for i in micro], 0)[0]
        batches.append(batch)
    return batches


def export(request: dict, work: str) -> dict:
    """Trace the task's graph_forward on a small batch of sample windows into `work`, then
    check the graph against torch on batches of other shapes."""
    import torch

    from corpusmill.operators.loading import load_model, load_tokenizer
    from corpusmill.pipelines.registry import get_task

    torch.set_num_threads(int(request.get("threads") or 1))
    task = get_task(request["task"])
    options = task.Options(**request["options"])
    ref, revision = request["model_ref"], request["revision"]
    tokenizer = load_tokenizer(ref, revision, request["trust_remote_code"])
    model = load_model(task.model_class(), ref, revision, dtype=torch.float32, device="cpu",
                       trust_remote_code=request["trust_remote_code"],
                       allow_pickle=request["allow_pickle"])
    with torch.no_grad():
        state = task.prepare(model, tokenizer, options, ref, revision)
    batches = sample_batches(request)
    example = _trace_example(batches)
    inputs = [name for name in INPUTS if name in example]
    graph = _Graph(task, model, state, options, inputs)
    with torch.no_grad():
        eager = task.graph_forward(model, {k: torch.from_numpy(v) for k, v in example.items()},
                                   state, options)
    graph.outputs = list(eager)
    seq = example["input_ids"].shape[1]
    dynamic = {name: {0: "batch", 1: "seq"} for name in inputs}
    for name, value in eager.items():
        dynamic[name] = {0: "batch", 1: "seq"} if value.dim() > 1 and value.shape[1] == seq \
            else {0: "batch"}
    path = os.path.join(work, GRAPH_FILE)
    _eager_attention(model)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on Python values it records as constants: the check below
            # runs the graph on other shapes, which is what tells whether that mattered
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(torch.from_numpy(example[n]) for n in inputs), path,
                              input_names=inputs, output_names=graph.outputs,
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)
    except Exception as e:  # noqa: BLE001 - the exporter's errors vary; report them whole
        raise ExportFailed(f"torch.onnx.export failed: {type(e).__name__}: {e}") from None
    fusions = _fuse(path, task, model, state, options, batches)
    if not fusions:  # a fused graph was checked before it replaced the plain one
        _check_against_torch(path, task, model, state, options, batches)
    return {"model_ref": ref, "task": task.name, "inputs": inputs, "outputs": graph.outputs,
            "options": request["options"], "fusions": fusions}


def _eager_attention(model) -> None:
    """Attention written out as matmul/softmax (not torch's SDPA kernel), which is the form
    ONNX Runtime's transformer optimizer recognises and fuses (`_fuse`)."""
    try:
        model.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001 - a model without the switch exports as it is
        pass


def _fuse(path, task, model, state, options, batches) -> dict:
    """ONNX Runtime's transformer fusions for BERT-like encoders (attention, embedding and
    skip layer norms, bias GELU: one kernel each instead of a dozen nodes), in place of the
    graph at `path` when the fused graph still equals torch; else the plain graph is kept.
    Returns the fused operator counts ({} when nothing was fused)."""
    config = model.config
    if getattr(config, "model_type", None) not in FUSABLE:
        return {}
    try:
        import logging

        from onnxruntime.transformers.optimizer import optimize_model

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fused = optimize_model(path, model_type="bert",
                                   num_heads=getattr(config, "num_attention_heads", 0) or 0,
                                   hidden_size=getattr(config, "hidden_size", 0) or 0,
                                   opt_level=0)
        counts = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        if not counts:
            return {}
        candidate = path + ".fused"
        fused.save_model_to_file(candidate)
        _check_against_torch(candidate, task, model, state, options, batches)
    except Exception:  # noqa: BLE001 - fusion is an optimisation: the plain graph stays
        if os.path.exists(path + ".fused"):
            os.unlink(path + ".fused")
        return {}
    os.replace(path, os.path.join(os.path.dirname(path), PLAIN_FILE))
    os.replace(candidate, path)
    return counts


class _Graph:  # a torch.nn.Module, built lazily so importing this module needs no torch
    def __new__(cls, task, model, state, options, inputs):
        import torch

        class Graph(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model, self.outputs = model, []

            def forward(self, *arrays):
                out = task.graph_forward(self.model, dict(zip(inputs, arrays)), state, options)
                return tuple(out[name] for name in self.outputs)

        # eval: the exporter restores the module's mode afterwards, and a module left in
        # training mode would switch the model's dropout on for the check that follows
        return Graph().eval()


def _trace_example(batches: list[dict]) -> dict:
    """A batch of at least two windows of different lengths (padding traced too)."""
    for batch in batches:
        lengths = batch["attention_mask"].sum(axis=1)
        if len(lengths) >= 2 and lengths.min() < lengths.max():
            return batch
    raise ExportFailed("the sample has no two windows of different lengths to trace with")


def _check_against_torch(path, task, model, state, options, batches) -> None:
    import torch

    session = open_session(path, threads=1)
    names = {i.name for i in session.get_inputs()}
    picked = _varied(batches)
    for batch in picked:
        with torch.no_grad():
            want = task.graph_forward(model, {k: torch.from_numpy(v) for k, v in batch.items()},
                                      state, options)
        got = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {k: v for k, v in batch.items() if k in names})))
        for name, expected in want.items():
            problem = output_mismatch(got[name], expected.numpy())
            if problem:
                raise ExportFailed(f"the exported graph's {name!r} differs from torch's on a "
                                   f"batch of shape {batch['input_ids'].shape}: {problem}")


def _varied(batches: list[dict]) -> list[dict]:
    """A few batches of different shapes: the first, a single window, the longest, a middle one."""
    if not batches:
        return []
    singles = [b for b in batches if b["input_ids"].shape[0] == 1]
    picked = [batches[0], batches[len(batches) // 2], batches[-1]] + singles[:1]
    seen, out = set(), []
    for b in picked:
        if b["input_ids"].shape not in seen:
            seen.add(b["input_ids"].shape)
            out.append(b)
    return out


def output_mismatch(got: np.ndarray, want: np.ndarray) -> str | None:
    """Why `got` is not `want` up to float rounding, or None."""
    if got.shape != want.shape:
        return f"shape {got.shape} instead of {want.shape}"
    if want.dtype.kind == "f":
        scale = max(1.0, float(np.nanmax(np.abs(want))) if want.size else 1.0)
        diff = float(np.nanmax(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
        same_nan = np.array_equal(np.isnan(got), np.isnan(want))
        return None if diff <= 1e-3 * scale and same_nan else f"max |diff| {diff:.3g}"
    equal = float(np.mean(got == want)) if want.size else 1.0
    return None if equal >= 0.99 else f"only {equal:.1%} of entries equal"


def open_session(path: str, threads: int, providers: list[str] | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no shape-annotation warnings per batch
    # threads sleep between operators instead of spinning: on a small machine the tokenize and
    # postprocess tasks share the cores with the actor
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=providers or ["CPUExecutionProvider"])


def agreement(fp32_path: str, int8_path: str, request: dict) -> dict:
    """int8 against float32 on the sample: per output, how often the best entry of the last
    axis agrees (labels, start/end positions, top tokens) and the mean cosine similarity."""
    from corpusmill.pipelines.registry import get_task

    task = get_task(request["task"])
    options = task.Options(**request["options"])
    sessions = [open_session(p, threads=int(request.get("threads") or 1))
                for p in (fp32_path, int8_path)]
    names = {i.name for i in sessions[0].get_inputs()}
    outputs = [o.name for o in sessions[0].get_outputs()]
    pairs: dict[str, list] = {}
    windows = 0
    for batch in sample_batches(request):
        feed = {k: v for k, v in batch.items() if k in names}
        a, b = (task.finish(dict(zip(outputs, s.run(None, feed))), options) for s in sessions)
        mask = batch["attention_mask"].astype(bool)
        windows += len(mask)
        for name in a:
            x, y = a[name], b[name]
            if x.ndim >= 2 and x.shape[1] == mask.shape[1]:  # per token: real tokens only
                x, y = x[mask], y[mask]
            pairs.setdefault(name, []).append((x, y))
    report = {"windows": windows, "outputs": {}}
    for name, parts in pairs.items():
        x = np.concatenate([p[0].reshape(-1, *p[0].shape[-1:]) for p in parts])
        y = np.concatenate([p[1].reshape(-1, *p[1].shape[-1:]) for p in parts])
        if x.dtype.kind == "f":
            x, y = np.nan_to_num(x), np.nan_to_num(y)
            cosine = (x * y).sum(-1) / np.maximum(
                np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), 1e-12)
            report["outputs"][name] = {"argmax_agreement": float(np.mean(
                x.argmax(-1) == y.argmax(-1))), "mean_cosine": float(cosine.mean())}
        else:
            report["outputs"][name] = {"argmax_agreement": float(np.mean(x[..., 0] == y[..., 0]))}
    return report


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as f:
        request = json.load(f)
    try:
        result = build(request)
    except ExportFailed as e:
        result = {"error": str(e)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
