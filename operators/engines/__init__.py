"""Engines: what runs a task's forward pass inside an inference actor.

The interface `Infer` uses (one engine per actor, built from the plan):
    engine = make_engine(plan)          loads the model once
    engine.pad_id                       the padding token id
    engine.forward(arrays, **extra)     one padded micro-batch: `input_ids`, `attention_mask`,
                                        maybe `token_type_ids` (numpy int64, (batch, seq))
                                        -> the task's raw outputs (numpy, (batch, ...))
    engine.combine_windows(outputs)     the task's optional second pass (torch only)
One module per engine: `torch_engine.py` (transformers, eager; every task) and
`onnx_engine.py` (ONNX Runtime; tasks with a `graph_forward`: one forward pass each).

`resources.backend` is settled in two steps. `check_backend(spec)`, in the preflight, refuses
an explicit `onnxruntime` that cannot work (a generation task, onnxruntime not installed, a
float16 dtype) before any Ray work. `prepare_backend(plan, corpus)`, on the driver once the
placement is known, settles `auto` and builds the graph: exported in a child process and
cached (`onnx_export.py`); with `dtype: int8` also quantised, and the int8 graph's agreement
with float32 on a sample of the corpus is printed.

`auto` never picks the slower engine and never spends a run's seconds on an export that does
not pay: in float32 it is torch (measured here, onnxruntime's float32 graph ran the bench's
MiniLM classifier at 0.97x the torch backend end to end, after a 10 s export on the first
run: bench/RESULTS.md); with `dtype: int8` on CPU it is onnxruntime's quantised graph (about
3x torch float32, against torch's dynamic quantisation), else torch with one line saying why.
"""
from __future__ import annotations

import dataclasses
import importlib.util

from corpusmill.errors import JobError
from corpusmill.notices import notice
from corpusmill.operators.plan import JobPlan

TORCH, ONNXRUNTIME = "torch", "onnxruntime"
SAMPLE_ROWS = 512  # corpus rows encoded for the export check, calibration and int8 agreement
SAMPLE_WINDOWS = 1024  # at most (long QA contexts and NLI pairs give several windows a row)
SHIPPED_WINDOWS = 64  # of them, in the plan: enough for an actor to rebuild a missing graph
INT8 = "int8"


def make_engine(plan: JobPlan):
    if plan.backend == ONNXRUNTIME:
        from corpusmill.operators.engines.onnx_engine import OnnxEngine
        return OnnxEngine(plan)
    from corpusmill.operators.engines.torch_engine import TorchEngine
    return TorchEngine(plan)


def onnxruntime_installed() -> bool:
    return (importlib.util.find_spec("onnxruntime") is not None
            and importlib.util.find_spec("onnx") is not None)


def unsupported(spec, on_gpu: bool | None = None) -> str | None:
    """Why the onnxruntime backend cannot run this job, or None."""
    task = _task(spec)
    if not task.has_graph():
        return (f"task {spec.task} runs several forward passes (generation), which only the "
                f"torch backend does")
    if spec.resources.dtype in ("float16", "bfloat16"):
        return f"dtype {spec.resources.dtype} is torch only; onnxruntime runs float32 or int8"
    if not onnxruntime_installed():
        return ("onnxruntime is not installed (pip install 'corpusmill[onnx]', or "
                "pip install onnxruntime onnx)")
    if on_gpu:
        return "the job runs on GPUs, where torch float16 is the default"
    return None


def _task(spec):
    from corpusmill.pipelines.registry import get_task
    return get_task(spec.task)


def check_backend(spec) -> None:
    """Preflight: an explicit `backend: onnxruntime` that cannot work is a JobError."""
    if spec.resources.backend == ONNXRUNTIME:
        why = unsupported(spec)
        if why:
            raise JobError(f"resources.backend: onnxruntime cannot run this job: {why}; use "
                           f"resources.backend: torch (or auto)")


def prepare_backend(plan: JobPlan, corpus, *, isolated: bool = True) -> JobPlan:
    """The plan with `backend` settled and, for onnxruntime, its graph built (see above).
    `isolated`: build in a child process (tests build in-process to save start-up time)."""
    spec = plan.spec
    requested = spec.resources.backend
    if requested == TORCH:
        return dataclasses.replace(plan, backend=TORCH)
    on_gpu = plan.num_gpus > 0
    if requested == "auto" and spec.resources.dtype != INT8:
        return dataclasses.replace(plan, backend=TORCH)  # float32 (or a GPU dtype): torch
    why = unsupported(spec, on_gpu=on_gpu and requested == "auto")
    if why:
        if requested == ONNXRUNTIME:
            raise JobError(f"resources.backend: onnxruntime cannot run this job: {why}")
        if plan.task.has_graph():  # generation tasks are torch-only: nothing to say
            notice(f"backend auto: torch ({why})")
        return dataclasses.replace(plan, backend=TORCH)
    from corpusmill.operators.engines import onnx_export

    try:
        ref, info = _build_graph(plan, corpus, isolated)
    except onnx_export.ExportFailed as e:
        if requested == ONNXRUNTIME:
            raise JobError(f"resources.backend: onnxruntime: the model could not be exported "
                           f"to ONNX: {e}; use resources.backend: torch") from None
        notice(f"backend auto: torch (the ONNX export failed: {e})")
        return dataclasses.replace(plan, backend=TORCH)
    if info.get("built"):
        notice(f"backend onnxruntime: graph built once in {info['seconds']} s and cached: "
               f"{', '.join(info['built'])}")
    if "agreement" in info:
        notice(describe_agreement(info["agreement"], ref.request["scheme"]))
    return dataclasses.replace(plan, backend=ONNXRUNTIME, graph=ref,
                               pad_id=ref.request["pad_id"])


def _build_graph(plan: JobPlan, corpus, isolated: bool):
    from corpusmill.operators.engines import onnx_export
    from corpusmill.operators.loading import load_tokenizer
    from corpusmill.operators.engines.onnx_quantize import DEFAULT_SCHEME
    from corpusmill.operators.engines.torch_engine import pad_id

    spec = plan.spec
    task, options = plan.task, plan.options
    tokenizer = load_tokenizer(plan.model_ref, spec.revision, spec.trust_remote_code)
    int8 = spec.resources.dtype == INT8
    fp32 = onnx_export.graph_folder(plan.model_ref, spec.revision, task, options, "float32")
    request = {
        "model_ref": plan.model_ref, "revision": spec.revision, "task": task.name,
        "options": options.model_dump(mode="json"), "trust_remote_code": spec.trust_remote_code,
        "allow_pickle": spec.allow_pickle, "pad_id": pad_id(tokenizer, plan.model_config),
        "fp32_folder": fp32, "threads": plan.torch_threads or 1,
        "sample": sample_windows(plan, corpus, tokenizer),
    }
    if int8:
        request["scheme"] = DEFAULT_SCHEME
        request["int8_folder"] = onnx_export.graph_folder(
            plan.model_ref, spec.revision, task, options, INT8, DEFAULT_SCHEME)
        request["agreement"] = True
    needed = not onnx_export.is_built(fp32) or (int8 and not onnx_export.is_built(
        request["int8_folder"]))
    info: dict = {"built": []}
    if needed or int8:
        info = onnx_export.run_build(request) if isolated else onnx_export.build(request)
    folder = request["int8_folder"] if int8 else fp32
    shipped = {**request, "sample": thin_sample(request["sample"], SHIPPED_WINDOWS)}
    return onnx_export.GraphRef(folder=folder, request=shipped,
                                agreement=info.get("agreement")), info


def thin_sample(sample: dict, limit: int) -> dict:
    """At most `limit` of the sample's windows, spread over its lengths."""
    count = len(sample["windows"])
    if count <= limit:
        return sample
    order = sorted(range(count), key=lambda i: len(sample["windows"][i]))
    keep = sorted(order[round(k * (count - 1) / (limit - 1))] for k in range(limit))
    types = sample["type_ids"]
    return {"windows": [sample["windows"][i] for i in keep],
            "type_ids": None if types is None else [types[i] for i in keep]}


def describe_agreement(report: dict, scheme: str) -> str:
    parts = []
    for name, figures in report["outputs"].items():
        text = f"{name}: best entry agrees on {figures['argmax_agreement']:.1%}"
        if "mean_cosine" in figures:
            text += f", mean cosine {figures['mean_cosine']:.4f}"
        parts.append(text)
    return (f"int8 ({scheme}) against float32 on {report['windows']} sample windows of the "
            f"corpus: {'; '.join(parts)}")


def sample_windows(plan: JobPlan, corpus, tokenizer, rows: int = SAMPLE_ROWS) -> dict:
    """Windows of up to `rows` corpus rows, taken evenly from the files, encoded by the task;
    built-in texts are added when the corpus gives too few to check an export with."""
    texts = _sample_texts(plan, corpus, rows)
    pairs = _valid_windows(plan, tokenizer, texts)
    if len(pairs) < 8 or len({len(ids) for ids, _ in pairs}) < 2:
        pairs += _valid_windows(plan, tokenizer, _builtin_texts(plan, tokenizer))
    types = [t for _, t in pairs]
    return thin_sample({"windows": [ids for ids, _ in pairs],
                        "type_ids": types if all(t is not None for t in types) else None},
                       SAMPLE_WINDOWS)


def _valid_windows(plan: JobPlan, tokenizer, texts: dict[str, list[str]]) -> list[tuple]:
    """(token ids, token type ids or None) of every window of the rows encode accepts."""
    if not next(iter(texts.values())):
        return []
    encoded = plan.task.encode(tokenizer, texts, plan.options, plan.max_length)
    pairs = []
    for row, row_windows in enumerate(encoded.windows):
        if encoded.errors is not None and encoded.errors[row]:
            continue
        types = encoded.token_type_ids[row] if encoded.token_type_ids is not None else None
        pairs += [(list(w), None if types is None else list(types[k]))
                  for k, w in enumerate(row_windows)]
    return pairs


def _sample_texts(plan: JobPlan, corpus, rows: int) -> dict[str, list[str]]:
    """Up to `rows` rows of the input columns, from the first group of each file in turn,
    read as the job reads them (Parquet, Arrow, JSON Lines). A file that cannot be read here is
    passed over: the run itself reports it, naming the file, or skips it on request."""
    import pyarrow as pa

    columns = plan.input_columns
    texts: dict[str, list[str]] = {name: [] for name in columns}
    per_file = max(1, rows // max(1, len(corpus.files)))
    for f in corpus.files:
        names = [c for c in columns.values() if c in f.schema.names]
        if len(names) < len(columns) or not f.row_groups or not f.row_groups[0]:
            continue
        try:
            table = _first_rows(corpus.fs, f, sorted(set(names)), per_file)
        except (OSError, pa.ArrowException, StopIteration):
            continue
        values = {name: table.column(column).to_pylist() for name, column in columns.items()}
        for i in range(table.num_rows):
            row = {n: v[i] for n, v in values.items()}
            if any(v is None for v in row.values()):
                continue
            for n, v in row.items():
                texts[n].append(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
        if len(texts[next(iter(texts))]) >= rows:
            break
    return texts


def _first_rows(fs, corpus_file, columns: list[str], rows: int):
    """The first `rows` rows of `columns`: a Parquet file streams only its first batch; other
    formats read their first group (operators/readers/read.py)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from corpusmill.operators.readers.files import read_group

    if corpus_file.format != "parquet":
        return read_group(fs, corpus_file, 0, columns).slice(0, rows)
    with fs.open_input_file(corpus_file.path) as handle:
        batch = next(pq.ParquetFile(handle).iter_batches(batch_size=rows, columns=columns))
        return pa.Table.from_batches([batch])


def _builtin_texts(plan: JobPlan, tokenizer) -> dict[str, list[str]]:
    mask = f" {tokenizer.mask_token}" if getattr(tokenizer, "mask_token", None) else ""
    base = ["The quick brown fox jumps over the lazy dog.",
            "A market report: the central bank raised rates and shares fell sharply today.",
            "Short.", "Our team won the match in the final minute after a long and hard game."]
    texts = [t.replace(" the", mask + " the", 1) for t in base] * 3
    return {name: list(texts) for name in plan.input_columns}
