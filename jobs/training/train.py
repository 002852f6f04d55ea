"""`corpusmill train`: fine-tune a base checkpoint for a task on a labelled Parquet corpus, in
this process or data-parallel on a Ray cluster, and leave a model folder `corpusmill run`
takes as its `model`.

    check the output folder      fresh / resume this training / already finished / overwrite
    preflight (no Ray)           input files and columns, field types, base model, tokenizer,
                                 weights, the label set (JobError = exit 2, the fix named)
    examples                     rows -> Arrow example files in <output>/.corpusmill/training/data
                                 (operators/training/train_data.py); the data fingerprint must match
                                 the one the checkpoints were made from
    train                        operators/training/train.py: in this process (one worker), or
                                 ray.train.torch.TorchTrainer with one worker per GPU
    report                       training_report.json + training_curves.png in the folder;
                                 .corpusmill/training/ (checkpoints, examples) is removed

Output folder: the model (config.json with the label maps, model.safetensors, tokenizer
files), the report and the curves; while training, `.corpusmill/training/` holds `state.json` (which
training this is, from which data), the examples and the checkpoints."""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from corpusmill.errors import JobError
from corpusmill.jobs.stores.corpus import open_corpus
from corpusmill.jobs.stores.lock import OutputLock
from corpusmill.jobs.stores.output import STATE_DIR, output_filesystem, replace_output
from corpusmill.jobs.preflight import (
    _check_output_location, _check_weights, _load_config, _load_tokenizer, _unified_types,
    corpusmill_version,
)
from corpusmill.jobs.training.train_report import (
    CURVES, REPORT, build_report, dumps, plot_curves, summary_lines,
)
from corpusmill.jobs.training.train_spec import TrainSpec
from corpusmill.operators.loading import resolve_model_ref
from corpusmill.operators.readers.files import GENERATED_ID
from corpusmill.operators.training.train import RAY_RUN, RESULT, TrainPlan, train_worker
from corpusmill.operators.training.train_data import (
    TRAIN, VALIDATION, Source, build_examples, data_paths, scan_labels,
)
from corpusmill.pipelines.base import ModelMismatch
from corpusmill.pipelines.training import get_training_task
from corpusmill.pipelines.training.base import TrainingTask

WORK = f"{STATE_DIR}/training"  # examples, checkpoints and state while training
STATE = "state.json"
MAX_DEFAULT_LENGTH = 512


@dataclass(frozen=True)
class TrainSummary:
    report: dict
    output: str
    already_finished: bool = False

    def lines(self) -> list[str]:
        return summary_lines(self.report, self.output, already=self.already_finished)


@dataclass(frozen=True)
class OutputState:
    finished: dict | None = None   # the report of this same training, already complete
    resume: dict | None = None     # the state of this same training, unfinished
    replace: bool = False          # overwrite: corpusmill's files are to be removed


def run_training(spec: TrainSpec) -> TrainSummary:
    started = time.monotonic()
    state = check_train_output(spec)
    if state.finished is not None:
        return TrainSummary(state.finished, spec.output, already_finished=True)
    setup = preflight_training(spec)
    with OutputLock(spec.output, uuid.uuid4().hex[:12]):
        fs, root = output_filesystem(spec.output)
        if state.replace:
            replace_output(spec.output)  # check_train_output made sure they are ours
        data = examples(spec, setup, state, fs, root)
        data_seconds = time.monotonic() - started
        workers, use_gpu = train_somewhere(spec, setup, _join(spec.output, WORK), data)
        result = _read_json(fs, f"{_path(root, WORK)}/{RESULT}")
        result["metric"] = setup.task.metric
        report = build_report(
            spec=spec, train_id=spec.train_id, provenance=provenance(spec, setup, data),
            data=data.as_dict(), result=result,
            seconds={"total": time.monotonic() - started, "data": data_seconds,
                     "train": result["train_seconds"]},
            workers=workers, device="cuda" if use_gpu else "cpu", labels=setup.labels)
        plot_curves(report, f"{root}/{CURVES}", setup.task.metric, fs.open_output_stream)
        fs.delete_dir(_path(root, WORK))
        with fs.open_output_stream(f"{root}/{REPORT}") as f:  # last: marks the folder done
            f.write(dumps(report))
    return TrainSummary(report, spec.output)


def examples(spec: TrainSpec, setup: "TrainingSetup", state: OutputState, fs, root: str):
    """The training and validation examples written into the work folder, checked against
    what a resumed training's checkpoints were made from; the data summary."""
    data = build_examples(setup.task, setup.tokenizer, setup.labels, spec.task_options,
                          setup.config, setup.max_length, setup.train, setup.validation,
                          setup.split, fs, data_paths(_path(root, WORK))["dir"])
    if state.resume and state.resume.get("fingerprint") != data.fingerprint:
        raise JobError(f"the input changed since this training's checkpoints in "
                       f"{spec.output!r} were made (data fingerprint "
                       f"{state.resume.get('fingerprint', '?')[:12]} then, "
                       f"{data.fingerprint[:12]} now); rerun with output_mode: overwrite "
                       f"to train afresh on the new data")
    if not data.splits[TRAIN].examples:
        raise JobError(f"no training rows: all {data.rows_read} rows read went to "
                       f"validation or had a null field ({data.rows_skipped} did); label "
                       f"more rows or lower validation.split")
    if spec.validation is not None and not data.splits[VALIDATION].examples:
        raise JobError("the validation split holds no rows; raise validation.split, give "
                       "validation: {input: PATH}, or set validation: null to train without")
    _write_json(fs, f"{_path(root, WORK)}/{STATE}",
                {"train_id": spec.train_id, "fingerprint": data.fingerprint,
                 "spec": spec.model_dump(mode="json")})
    return data


# ---- output folder -----------------------------------------------------------------------------

def check_train_output(spec: TrainSpec) -> OutputState:
    """What to do with an existing output folder, before any work. resume: an empty folder
    starts afresh, this same training (same train id) continues or, when finished, is left
    alone; anything else is refused. overwrite: a folder corpusmill trained into is cleared
    (a folder holding other files is refused). error: any file is refused."""
    fs, root = output_filesystem(spec.output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return OutputState()
    if info.type != pafs.FileType.Directory:
        raise JobError(f"output {spec.output!r} exists and is not a folder")
    # corpusmill's state folder holds the lock, the logs and, while training, the work folder
    names = {e.base_name for e in fs.get_file_info(pafs.FileSelector(root))} - {STATE_DIR}
    training = fs.get_file_info(f"{root}/{WORK}").type == pafs.FileType.Directory
    if not names and not training:
        return OutputState()
    ours = REPORT in names or training
    if spec.output_mode == "error":
        raise JobError(f"output folder {spec.output!r} is not empty; choose another, or set "
                       f"output_mode: resume or overwrite")
    if spec.output_mode == "overwrite":
        if not ours:
            raise JobError(f"output folder {spec.output!r} holds files corpusmill did not "
                           f"train ({', '.join(sorted(names)[:5])}); output_mode: overwrite "
                           f"only replaces a folder `corpusmill train` wrote. Choose another "
                           f"output folder")
        return OutputState(replace=True)
    if REPORT in names:
        report = _read_json(fs, f"{root}/{REPORT}")
        if report.get("train_id") == spec.train_id and report.get("status") == "complete":
            return OutputState(finished=report)
        raise JobError(f"output folder {spec.output!r} holds another training's model "
                       f"(train id {report.get('train_id')}, this spec is {spec.train_id}); "
                       f"choose another output, or set output_mode: overwrite to replace it")
    if training:
        state_path = f"{root}/{WORK}/{STATE}"
        if fs.get_file_info(state_path).type == pafs.FileType.NotFound:
            return OutputState(resume={})  # killed before its data was written: start over
        state = _read_json(fs, state_path)
        if state.get("train_id") == spec.train_id:
            return OutputState(resume=state)
        raise JobError(f"output folder {spec.output!r} holds an unfinished training of another "
                       f"spec (train id {state.get('train_id')}, this spec is "
                       f"{spec.train_id}); finish it with its own spec, or set output_mode: "
                       f"overwrite to start this one there")
    raise JobError(f"output folder {spec.output!r} holds files corpusmill did not train "
                   f"({', '.join(sorted(names)[:5])}); choose an empty or new folder")


# ---- preflight ---------------------------------------------------------------------------------

@dataclass
class TrainingSetup:
    task: TrainingTask
    train: Source
    validation: Source | None
    split: tuple[float, int] | None
    model_ref: str
    config: object
    tokenizer: object
    max_length: int
    labels: list[str] | None


def preflight_training(spec: TrainSpec) -> TrainingSetup:
    """Everything checkable without training: inputs, fields, types, the base model, labels."""
    task = get_training_task(spec.task)
    _check_output_location(spec)
    train = _source(spec, task, spec.input, "input")
    validation, split = None, None
    if spec.validation is not None and spec.validation.input is not None:
        validation = _source(spec, task, spec.validation.input, "validation.input",
                             fields=train.fields)
    elif spec.validation is not None:
        split = (spec.validation.split, spec.validation.seed)
    types = _unified_types(train.files + (validation.files if validation else []),
                           set(train.fields.values()))
    try:
        task.check_types({name: types[column] for name, column in train.fields.items()})
    except ValueError as e:
        raise JobError(f"{spec.task} training: {e}") from None
    model_ref = resolve_model_ref(spec.model)
    config = _load_config(spec, model_ref)
    try:
        task.check_base_model(config)
    except ModelMismatch as e:
        raise JobError(f"model {spec.model!r}: {e}") from None
    tokenizer = _load_tokenizer(spec, model_ref)
    _check_weights(spec, model_ref)
    labels = None
    if task.label_field is not None:
        found = scan_labels(task, [train] + ([validation] if validation else []))
        try:
            labels = task.label_list(found, spec.task_options)
        except ValueError as e:
            raise JobError(f"{spec.task} training: {e}") from None
    return TrainingSetup(task=task, train=train, validation=validation, split=split,
                         model_ref=model_ref, config=config, tokenizer=tokenizer,
                         max_length=_max_length(spec, tokenizer, config), labels=labels)


def _source(spec: TrainSpec, task: TrainingTask, path: str, what: str,
            fields: dict[str, str] | None = None) -> Source:
    corpus = open_corpus(path)  # Parquet, Arrow, JSON Lines, a saved dataset, hf://
    fs, files = corpus.fs, corpus.files
    present = set.intersection(*(set(f.schema.names) for f in files))
    if fields is None:
        fields = _fields(spec, task, present)
    for f in files:
        missing = [f"{column!r} (field {name!r})" for name, column in fields.items()
                   if column not in f.schema.names]
        if missing:
            raise JobError(f"{what}: {f.name!r} has no column {', '.join(missing)}; columns "
                           f"present: {', '.join(f.schema.names)}")
        if spec.id_column is not None and spec.id_column not in f.schema.names:
            raise JobError(f"{what}: id_column {spec.id_column!r} is not in {f.name!r}; "
                           f"columns present: {', '.join(f.schema.names)}")
    wanted = list(dict.fromkeys(([spec.id_column] if spec.id_column else [])
                                + list(fields.values())))
    types = _unified_types(files, set(wanted))
    generated = [pa.field(GENERATED_ID, pa.string())] if spec.id_column is None else []
    schema = pa.schema(generated + [pa.field(c, types[c]) for c in wanted])
    return Source(fs=fs, files=files, schema=schema, id_column=spec.id_column, fields=fields)


def _fields(spec: TrainSpec, task: TrainingTask, present: set[str]) -> dict[str, str]:
    """Training field -> corpus column: the first field set whose fields are all mapped in
    `columns` or present by name."""
    known = {name for names in task.field_sets for name in names}
    stray = sorted(set(spec.columns) - known)
    if stray:
        raise JobError(f"columns maps {', '.join(map(repr, stray))}, which {spec.task} training "
                       f"does not read; its fields: "
                       f"{' or '.join(', '.join(s) for s in task.field_sets)}")
    for names in task.field_sets:
        mapping = {name: spec.columns.get(name, name) for name in names}
        if all(name in spec.columns or name in present for name in names) and (
                not spec.columns or set(spec.columns) <= set(names)):
            return mapping
    example = ", ".join(f"{n}: <column>" for n in task.field_sets[0])
    raise JobError(f"{spec.task} training reads the fields "
                   f"{' or '.join('(' + ', '.join(s) + ')' for s in task.field_sets)}; map "
                   f"them to corpus columns, e.g. columns: {{{example}}}; columns present: "
                   f"{', '.join(sorted(present))}")


def _max_length(spec: TrainSpec, tokenizer, config) -> int:
    if spec.training.max_length:
        return spec.training.max_length
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 1_000_000:  # transformers' "no limit" sentinel
        limit = getattr(config, "max_position_embeddings", None) or MAX_DEFAULT_LENGTH
    return int(min(limit, MAX_DEFAULT_LENGTH))


def provenance(spec: TrainSpec, setup: TrainingSetup, data) -> dict:
    import torch
    import transformers

    return {
        "base_model": spec.model, "revision": spec.revision, "input": spec.input,
        "validation": None if spec.validation is None else spec.validation.model_dump(),
        "columns": setup.train.fields, "id_column": spec.id_column,
        "data_fingerprint": data.fingerprint, "options": spec.task_options.model_dump(
            mode="json"), "training": spec.training.model_dump(mode="json"),
        "seed": spec.training.seed, "max_length": setup.max_length,
        "versions": {"corpusmill": corpusmill_version(), "transformers": transformers.__version__,
                     "torch": torch.__version__},
    }


# ---- where training runs -----------------------------------------------------------------------

def uses_ray(spec: TrainSpec) -> bool:
    """Ray Train when RAY_ADDRESS names a cluster, the output is on object storage, or several
    workers are asked for; else training runs in this process."""
    workers = spec.resources.workers
    return (bool(os.environ.get("RAY_ADDRESS")) or "://" in spec.output
            or (workers != "auto" and workers > 1))


def train_somewhere(spec: TrainSpec, setup: "TrainingSetup", work: str,
                    data) -> tuple[int, bool]:
    """Train in this process or on Ray; (workers, GPUs used)."""
    res = spec.resources
    cores = os.cpu_count() or 1
    ray_train = uses_ray(spec)

    def plan(workers: int, use_gpu: bool, threads: int) -> TrainPlan:
        train, validation = data.splits[TRAIN], data.splits[VALIDATION]
        print(f"training {spec.train_id}: {spec.task}, {train.rows} rows ({train.examples} "
              f"examples), validation {validation.rows} rows, on {workers} worker(s)"
              f"{' with Ray Train' if ray_train else ''}", flush=True)
        return TrainPlan(spec=spec, task=setup.task, model_ref=setup.model_ref,
                         labels=setup.labels, max_length=setup.max_length, work=work,
                         workers=workers, use_gpu=use_gpu, torch_threads=threads,
                         has_validation=validation.examples > 0)

    if not ray_train:
        import torch

        use_gpu = torch.cuda.is_available() if res.use_gpu == "auto" else res.use_gpu
        train_worker(plan(1, use_gpu, res.torch_threads or cores))
        return 1, use_gpu
    import ray

    from corpusmill.jobs.cluster.ray_session import ensure_ray
    from corpusmill.jobs.stores.storage import check_shared_paths

    started = ensure_ray()
    try:
        check_shared_paths(spec, setup.model_ref)
        workers, use_gpu = ray_placement(res, ray.cluster_resources())
        train_on_ray(plan(workers, use_gpu, res.torch_threads or max(1, cores // workers)))
    finally:
        if started:
            ray.shutdown()
    return workers, use_gpu


def ray_placement(res, cluster: dict) -> tuple[int, bool]:
    """(workers, use GPUs) on a Ray cluster with `cluster` resources: `workers: auto` is one
    per GPU, else 1. Refuses what the cluster cannot hold (Ray would wait forever)."""
    gpus, cpus = cluster.get("GPU", 0), cluster.get("CPU", 0)
    use_gpu = gpus >= 1 if res.use_gpu == "auto" else res.use_gpu
    workers = res.workers if res.workers != "auto" else (max(1, int(gpus)) if use_gpu else 1)
    if use_gpu and workers > gpus:
        raise JobError(f"{workers} GPU worker(s) asked for, but the Ray cluster has {gpus:g} "
                       f"GPU(s); lower resources.workers")
    if workers * res.cpus_per_worker > cpus:
        raise JobError(f"{workers} worker(s) x cpus_per_worker {res.cpus_per_worker:g} need more "
                       f"than the Ray cluster's {cpus:g} CPUs; lower resources.workers or "
                       f"resources.cpus_per_worker")
    return workers, use_gpu


def train_on_ray(plan: TrainPlan) -> None:
    """Data-parallel training with Ray Train: `workers` copies of `train_worker`, checkpoints
    in `<output>/.corpusmill/training/ray` (Ray resumes from the newest when the run is started again)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from corpusmill.operators.training.train import ray_worker_loop

    res = plan.spec.resources
    fs, root = output_filesystem(plan.work)
    per_worker = {"CPU": res.cpus_per_worker, **({"GPU": 1} if plan.use_gpu else {})}
    trainer = TorchTrainer(
        ray_worker_loop, train_loop_config={"plan": plan},
        scaling_config=ScalingConfig(num_workers=plan.workers, use_gpu=plan.use_gpu,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(
            name=RAY_RUN, storage_path=root,
            storage_filesystem=None if isinstance(fs, pafs.LocalFileSystem) else fs,
            failure_config=FailureConfig(max_failures=res.max_retries),
            checkpoint_config=CheckpointConfig(num_to_keep=2)))
    trainer.fit()


# ---- small helpers -----------------------------------------------------------------------------

def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _path(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def _write_json(fs: pafs.FileSystem, path: str, data: dict) -> None:
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(data, indent=2, default=str).encode())


def _read_json(fs: pafs.FileSystem, path: str) -> dict:
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())
