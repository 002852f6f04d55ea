"""The job spec: one YAML file says what to run on which corpus. Validated with pydantic; unknown
keys are refused with the accepted ones listed; task options are validated by the task itself.

Relative paths in a spec file (`input`, `output`, and `model` when it names an existing folder)
are resolved against the spec file's directory, so a job runs the same from any working dir.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator,
)

from corpusmill.errors import JobError
from corpusmill.kube_spec import KubeSettings
from corpusmill.pipelines.base import EvaluateOptions, TaskOptions
from corpusmill.pipelines.registry import UnknownTask, get_task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Batching(_Strict):
    max_tokens: int = Field(2048, ge=16, description="Padded tokens per forward pass: rows of "
                            "similar length are grouped and a batch is cut at this budget.")
    max_length: int | None = Field(None, ge=2, description="Truncate inputs to this many tokens; "
                                   "default: the model's own limit.")
    window_rows: int = Field(1024, ge=1, description="Rows sorted by length together before "
                             "batches are cut (a bounded window of the stream).")


class ActorRange(_Strict):
    """An elastic inference pool: Ray Data starts `min` actors and adds more, up to `max`, while
    work queues; on an autoscaling cluster the cluster autoscaler adds nodes to hold them."""
    min: int = Field(1, ge=1, description="Actors the pool keeps (and starts with).")
    max: int = Field(..., ge=1, description="Actors the pool may grow to.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"concurrency.min ({self.min}) must be <= concurrency.max "
                             f"({self.max})")
        return self


class Resources(_Strict):
    concurrency: int | Literal["auto"] | ActorRange = Field(
        "auto", description="Inference actors, each loading the model once: a number (a fixed "
                            "pool), a range {min: 1, max: 8} (an elastic pool), or `auto`: on "
                            "an autoscaling cluster from 1 to as many as its node types allow "
                            "(one per GPU, or one single-threaded actor per CPU core, at most 8 "
                            "per node); on a fixed cluster as many as it holds now. An elastic "
                            "pool grows while blocks queue (on an autoscaling cluster the "
                            "autoscaler adds nodes for it); more actors than the cluster can "
                            "ever hold are refused before any work.")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _one_of_three(cls, value):
        """One message for any wrong value, not one per kind the union accepts."""
        usage = "a number >= 1, 'auto' or a range {min: 1, max: 8}"
        if value == "auto" or isinstance(value, ActorRange):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"min", "max"})
            if unknown:
                raise ValueError(f"concurrency range accepts min and max, not "
                                 f"{', '.join(unknown)}")
            if "max" not in value:
                raise ValueError("a concurrency range needs max, e.g. {min: 1, max: 8}")
            try:
                low, high = int(value.get("min", 1)), int(value["max"])
            except (TypeError, ValueError):
                raise ValueError(f"concurrency must be {usage}") from None
            if low < 1 or high < low:
                raise ValueError(f"concurrency range needs 1 <= min <= max, got min {low}, "
                                 f"max {high}")
            return ActorRange(min=low, max=high)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError(f"concurrency must be {usage}")

    num_gpus: float | Literal["auto"] = Field("auto", description="GPUs per inference actor; "
                                              "`auto`: 1 when the cluster has GPUs now or has "
                                              "a node type the autoscaler can add with GPUs, "
                                              "else 0.")
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = Field(
        "auto", description="Weights dtype; `auto`: float16 on GPU, float32 on CPU; `int8`: "
                            "CPU only, faster, outputs differ slightly from float32: with "
                            "onnxruntime its quantisation (agreement with float32 printed "
                            "at the start), with torch dynamic quantisation of Linear layers.")
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="What runs the model: `torch`, or `onnxruntime` (single-forward "
                            "tasks: the model and the task's reductions exported once to an "
                            "ONNX graph, cached); `auto`: torch, except with `dtype: int8` on "
                            "CPU, where onnxruntime's quantised graph runs when onnxruntime is "
                            "installed and the export succeeds (else torch, one line says "
                            "why); generation tasks always run on torch.")
    tokenize: Literal["auto", "actor", "tasks"] = Field(
        "auto", description="Where texts are tokenized: `actor` inside the inference actors "
                            "(token ids never leave the process; best when the actors' cores "
                            "are the ones that would tokenize), `tasks` in CPU tasks ahead of "
                            "them (tokenizing overlaps a GPU's inference); `auto`: tasks "
                            "beside GPU actors or multi-threaded CPU actors, else actor.")
    executor: Literal["auto", "ray", "process"] = Field(
        "auto", description="Where the job runs: `ray`, Ray Data with an actor pool (a local "
                            "Ray when no cluster is named); `process`, in the command's own "
                            "process with no Ray: the model loaded once, blocks read, run and "
                            "written one after another, exactly once as on Ray; `auto`: "
                            "`process` when the job runs on this machine (no --address, "
                            "RAY_ADDRESS unset), has one task, asks for no GPU, resumes "
                            "nothing, and the machine has at most 4 cores or the job at most "
                            "20,000 rows; else `ray`. A stopped job resumes on Ray.")
    cpus_per_actor: float = Field(0.5, gt=0, description="CPUs Ray reserves per inference actor.")
    torch_threads: int | None = Field(None, ge=1, description="torch threads per CPU actor; "
                                      "default: the node's cores divided among the actors.")
    max_retries: int = Field(3, ge=0, description="Retries of a task or restarts of an actor "
                             "lost to a system failure (dead worker, lost node) before the job "
                             "fails; a block sent to an actor that is restarting waits for it; "
                             "a model that cannot load fails at once.")


TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a task's name in `tasks:`, its columns' prefix


class TaskBlock(_Strict):
    """One task of a job with several (`tasks:`): what it runs and the settings that belong to
    one model. `batching` and `resources` keys given here override the job's own."""
    task: str = Field(..., description="Task name; `corpusmill tasks` lists them.")
    model: str = Field(..., description="Hub id, local model folder or `package:MODULE/SUBDIR`.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    options: dict[str, Any] = Field(default_factory=dict, description="The task's options.")
    columns: dict[str, str] | None = Field(None, description="Task input -> corpus column; "
                                           "default: the job's `columns`.")
    batching: dict[str, Any] = Field(default_factory=dict, description="Overrides of the job's "
                                     "`batching` keys for this model.")
    resources: dict[str, Any] = Field(default_factory=dict, description="Overrides of the "
                                      "job's `resources` keys for this model (concurrency, "
                                      "num_gpus, dtype, backend, ...).")
    evaluate: dict[str, Any] | None = Field(None, description="This task's gold column and "
                                            "options (as the single-task `evaluate`).")
    trust_remote_code: bool | None = Field(None, description="Default: the job's.")
    allow_pickle: bool | None = Field(None, description="Default: the job's.")


class JobSpec(_Strict):
    task: str | None = Field(None, description="Task name; `corpusmill tasks` lists them. "
                             "Required unless `tasks` is given.")
    model: str | None = Field(None, description="Hugging Face hub id, local model folder, or "
                              "`package:MODULE/SUBDIR` for a folder inside an installed Python "
                              "package. Required unless `tasks` is given.")
    tasks: dict[str, TaskBlock] | None = Field(
        None, description="Several tasks in one pass over the corpus, by name: each a block "
                          "with `task`, `model` and its own `options`, `revision`, `columns`, "
                          "`batching`, `resources`, `evaluate`. Their output columns are "
                          "prefixed `<name>_`; instead of `task`/`model` "
                          "(docs/guides/several-tasks.md).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    input: str = Field(..., description="Parquet file, folder (searched recursively; names "
                       "starting `_` or `.` skipped), or glob; hive-style folders "
                       "(`date=2026-11-22/`) become string columns. Also Arrow IPC files "
                       "(`*.arrow`), a `datasets` `save_to_disk` folder, JSON Lines (`*.jsonl`, "
                       "`*.ndjson`) and `hf://datasets/OWNER/NAME[@REVISION]/PATH`; local or "
                       "object storage.")
    output: str = Field(..., description="Output folder for Parquet files (local or object "
                        "storage); corpusmill's own files go to its `.corpusmill/` folder.")
    columns: dict[str, str] = Field(default_factory=dict, description="Task input -> corpus "
                                    "column, e.g. {text: review_body}; default: same name.")
    id_column: str | None = Field(None, description="Column that identifies rows; when absent "
                                  "a `row_id` column ('<file relative to input>:<row in file>') "
                                  "is added.")
    keep_columns: list[str] | None = Field(None, description="Corpus columns copied to the "
                                           "output (files lacking one get nulls); default: all.")
    options: dict[str, Any] = Field(default_factory=dict, description="Task options, typed and "
                                    "validated by the task (the tasks reference lists them).")
    batching: Batching = Field(default_factory=Batching, description="How rows become forward "
                               "passes: rows sorted by length within a window, batches cut by "
                               "padded tokens.")
    resources: Resources = Field(default_factory=Resources, description="Where and on what the "
                                 "model runs: actors, GPUs, dtype, backend, retries.")
    on_error: Literal["record", "skip", "raise"] = Field(
        "record", description="Per-row errors: keep the row with `error` set and null outputs "
                              "(record), leave it out (skip), or stop the job (raise).")
    output_mode: Literal["resume", "overwrite", "error"] = Field(
        "resume", description="When the output folder already holds files: finish the same "
                              "job where it stopped and refuse another job's output (resume), "
                              "replace corpusmill's files (overwrite; a folder holding "
                              "anything else is refused), or refuse (error).")
    incremental: bool = Field(False, description="Process only input files that no earlier "
                              "run of this job finished (by name, size and a fingerprint of "
                              "the content) "
                              "and add their rows to the output; for scheduled runs over a "
                              "growing corpus. `corpusmill run --incremental` sets it.")
    partition_by: list[str] = Field(default_factory=list, description="Output columns to "
                                    "partition the output by, hive-style (`date=.../`).")
    skip_corrupt_files: bool = Field(False, description="Skip input files that are not readable "
                                     "Parquet, and row groups whose data pages are damaged, "
                                     "instead of refusing the job (listed in the summary; "
                                     "exit 3).")
    trust_remote_code: bool = Field(False, description="Allow model code from the checkpoint.")
    allow_pickle: bool = Field(False, description="Allow pickle-based (.bin) weights; default "
                               "loads safetensors only.")
    evaluate: dict[str, Any] | None = Field(
        None, description="Score the output against a gold column after the run: {gold: "
                          "<column>} plus the task's gold options; rows with null gold are "
                          "left out and counted. Does not change what the job computes.")
    kube: KubeSettings | None = Field(
        None, description="How `corpusmill kube` runs the job on Kubernetes (KubeRay): "
                          "image, namespace, Secret, worker groups, volumes. Ignored by "
                          "`corpusmill run`; not part of the job id.")

    _options: TaskOptions | None = PrivateAttr(None)
    _evaluate: EvaluateOptions | None = PrivateAttr(None)
    _task_specs: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _validate_task_options(self):
        if self.tasks is not None:
            self._task_specs = _task_specs(self)
            return self
        missing = [key for key in ("task", "model") if getattr(self, key) is None]
        if missing:
            keys = "key" if len(missing) == 1 else "keys"
            raise ValueError(f"missing required {keys} {', '.join(map(repr, missing))}: a job "
                             f"names a task and a model, or several under tasks: {{NAME: {{task: "
                             f"..., model: ...}}}}")
        try:
            task = get_task(self.task)
        except UnknownTask as e:
            raise ValueError(str(e)) from None
        self._options = validate_options(task.Options, self.options, f"{task.name} option")
        if self.evaluate is not None:
            self._evaluate = _evaluate_options(task, self.evaluate)
        return self

    @property
    def several(self) -> bool:
        """A job with several tasks (`tasks:`)."""
        return self.tasks is not None

    def task_specs(self) -> dict[str, "JobSpec"]:
        """name -> the single-task spec of each of several tasks: the job-wide keys (input,
        output, ids, kept columns, on_error, ...) with the task block's own. Each computes what
        a single-task job of that spec would; the job runs them in one pass. A single-task job:
        {'': itself}."""
        if self.tasks is None:
            return {"": self}
        return dict(self._task_specs)

    def describe(self) -> str:
        """'TASK with MODEL', or the tasks of a job with several, for one-line messages."""
        if self.tasks is None:
            return f"{self.task} with {self.model}"
        return f"{len(self.tasks)} tasks: " + ", ".join(
            f"{name} ({block.task} with {block.model})" for name, block in self.tasks.items())

    @property
    def evaluate_options(self) -> EvaluateOptions | None:
        """The validated `evaluate` block (the task's own gold options), or None."""
        return self._evaluate

    @property
    def task_options(self) -> TaskOptions:
        return self._options

    @property
    def job_id(self) -> str:
        """Stable id of what this job computes (not of where or how fast): same spec, same id."""
        return stable_id(self.identity)

    @property
    def identity(self) -> dict:
        """What the job computes: the settings its id is made from."""
        if self.tasks is not None:
            identity = {"input": self.input, "output": self.output, "id_column": self.id_column,
                        "keep_columns": self.keep_columns,
                        "tasks": {name: _task_identity(spec)
                                  for name, spec in self._task_specs.items()}}
            if self.partition_by:
                identity["partition_by"] = self.partition_by
            return identity
        identity = {
            "task": self.task, "model": self.model, "revision": self.revision,
            "input": self.input, "output": self.output, "columns": self.columns,
            "id_column": self.id_column, "keep_columns": self.keep_columns,
            "options": self._options.model_dump(mode="json"),
            "max_length": self.batching.max_length,
        }
        if self.partition_by:  # only when set, so earlier outputs keep their job id
            identity["partition_by"] = self.partition_by
        return identity


def _task_identity(spec: "JobSpec") -> dict:
    """What one of several tasks computes (the job-wide keys are the job's)."""
    return {"task": spec.task, "model": spec.model, "revision": spec.revision,
            "columns": spec.columns, "options": spec.task_options.model_dump(mode="json"),
            "max_length": spec.batching.max_length}


# keys of a job with several tasks that belong to each task, not to the job
PER_TASK_KEYS = ("task", "model", "revision", "options", "evaluate")


def _task_specs(job: "JobSpec") -> dict[str, "JobSpec"]:
    """The single-task spec of each task block, validated as a job of its own would be;
    errors name the task (`tasks.NAME...`)."""
    stray = [key for key in PER_TASK_KEYS if key in job.model_fields_set
             and getattr(job, key) not in (None, {})]
    if stray:
        raise ValueError(f"{', '.join(map(repr, stray))} belong(s) in each task's block when "
                         f"the job has tasks: (tasks: {{NAME: {{task: ..., model: ...}}}})")
    if not job.tasks:
        raise ValueError("tasks: give at least one task, e.g. tasks: {sentiment: {task: "
                         "text-classification, model: ...}}")
    specs = {}
    for name, block in job.tasks.items():
        if not TASK_NAME.match(name) or name == "error":
            raise ValueError(f"tasks: {name!r} is not a usable task name: lower-case letters, "
                             f"digits and _, starting with a letter, at most 32 characters "
                             f"(it prefixes the task's output columns: {name}_label); not "
                             f"'error'")
        data = job.model_dump(exclude={"tasks", "kube", *PER_TASK_KEYS}, exclude_unset=True)
        data.update(task=block.task, model=block.model, revision=block.revision,
                    options=block.options, evaluate=block.evaluate)
        if block.columns is not None:
            data["columns"] = block.columns
        for key in ("trust_remote_code", "allow_pickle"):
            if getattr(block, key) is not None:
                data[key] = getattr(block, key)
        for key in ("batching", "resources"):
            data[key] = {**job.model_dump(include={key}, exclude_unset=True).get(key, {}),
                         **getattr(block, key)}
        try:
            specs[name] = JobSpec(**data)
        except ValidationError as e:
            where = _describe(e, JobSpec, prefix=f"tasks.{name}.", what="key")
            raise ValueError(f"task {name!r}: {where}") from None
    in_process = [name for name, one in specs.items() if one.resources.executor == "process"]
    if in_process:
        raise ValueError(f"resources.executor: process runs one task in the command's own "
                         f"process; a job with several tasks runs on Ray (an actor pool per "
                         f"task). Use executor: ray or auto (set for task(s) "
                         f"{', '.join(map(repr, in_process))})")
    return specs


def identity_differences(before: dict, now: dict) -> list[str]:
    """'key: X before, Y now' for each setting two job identities disagree on; options and
    other mappings are compared key by key (`options.top_k`)."""
    differences = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [f"{key}.{item}" for item in identity_differences(old, new)]
        elif old != new:
            differences.append(f"{key}: {old!r} before, {new!r} now")
    return differences


def parse_spec(data: Any, *, base_dir: str | os.PathLike = ".", source: str = "job spec") -> JobSpec:
    """Validate a spec mapping; relative paths resolve against `base_dir`."""
    spec = validate_spec(JobSpec, data, source, "task, model, input, ...")
    return _resolve_paths(spec, Path(base_dir))


def validate_spec(model: type[BaseModel], data: Any, source: str, keys: str) -> Any:
    """`data` as a spec `model`, or a JobError naming what is wrong (unknown keys with the
    accepted ones)."""
    if not isinstance(data, dict):
        raise JobError(f"{source}: expected a mapping of keys ({keys}), "
                       f"got {type(data).__name__}")
    try:
        return model(**data)
    except ValidationError as e:
        raise JobError(f"{source}: {_describe(e, model, what='key')}") from None


def validate_options(options: type[TaskOptions], values: dict, what: str) -> TaskOptions:
    """A task's `values` as its `options` model, or a ValueError naming what is wrong (unknown
    options with the accepted ones), for a spec validator to raise."""
    try:
        return options(**values)
    except ValidationError as e:
        raise ValueError(_describe(e, options, prefix="options.", what=what)) from None


def stable_id(identity: dict) -> str:
    """A short hash of what a spec computes (its JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_spec(path: str | os.PathLike, overrides: list[str] = ()) -> JobSpec:
    """Read a YAML job file, apply `--set key.sub=value` overrides, validate."""
    data = read_spec_file(path, overrides)
    return parse_spec(data, base_dir=Path(path).parent, source=str(path))


def read_spec_file(path: str | os.PathLike, overrides: list[str] = (), *,
                   kind: str = "job") -> Any:
    """The YAML of a spec file (job or train) with `--set key.sub=value` overrides applied;
    not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"{kind} file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise JobError(f"{path}: not valid YAML: {e}") from None
    if isinstance(data, dict):
        for item in overrides:
            apply_override(data, item)
    return data


def apply_override(data: dict, item: str) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML (3 -> int)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise JobError(f"--set expects KEY=VALUE (e.g. options.top_k=3), got {item!r}")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise JobError(f"--set {item!r}: {part!r} is not a mapping in the job spec")
        node = child
    node[leaf] = yaml.safe_load(raw) if raw else ""


def _resolve_paths(spec: JobSpec, base: Path) -> JobSpec:
    updates = {"input": _resolve(spec.input, base), "output": _resolve(spec.output, base)}
    if spec.tasks is not None:
        tasks = {name: block.model_copy(update={"model": resolve_model_path(block.model, base)})
                 for name, block in spec.tasks.items()}
        resolved = spec.model_copy(update={**updates, "tasks": tasks})
        resolved._task_specs = {name: _resolve_paths(one, base)
                                for name, one in spec._task_specs.items()}
        return resolved
    updates["model"] = resolve_model_path(spec.model, base)
    resolved = spec.model_copy(update=updates)
    resolved._options = spec.task_options
    resolved._evaluate = spec.evaluate_options
    return resolved


def _evaluate_options(task, block: dict) -> EvaluateOptions:
    if task.Evaluate is None:
        from corpusmill.pipelines.registry import all_tasks

        scored = ", ".join(t.name for t in all_tasks() if t.Evaluate is not None)
        raise ValueError(f"evaluate: {task.name} has no metric against gold (its outputs have "
                         f"no single right answer); tasks with one: {scored}")
    try:
        return task.Evaluate(**block)
    except ValidationError as e:
        raise ValueError(_describe(e, task.Evaluate, prefix="evaluate.",
                                   what=f"{task.name} evaluate key")) from None


def resolve_model_path(model: str, base: Path) -> str:
    """A local model folder made absolute against `base`; hub ids and `package:` unchanged."""
    if _looks_local(model) or (base / model).exists():
        return _resolve(model, base)
    return model


def _looks_local(model: str) -> bool:
    return looks_like_path(model) or os.path.isdir(model)


def looks_like_path(model: str) -> bool:
    """A model reference that is never a hub id: absolute, dot-relative or home paths, Windows
    separators, and more than one '/' (hub ids are `name` or `org/name`); URIs too."""
    return (model.startswith(("/", "./", "../", "~", ".\\")) or "\\" in model
            or model.count("/") > 1)


def _resolve(path: str, base: Path) -> str:
    if "://" in path:  # object storage URI
        return path
    expanded = os.path.expanduser(path)
    # Absolute, always: Ray workers run in other working directories, and Ray Data's
    # checkpoint path must be a URI or an absolute path.
    return os.path.abspath(os.path.join(base, expanded))


def _describe(error: ValidationError, model: type[BaseModel], *, prefix: str = "",
              what: str) -> str:
    """Readable lines from a pydantic error; unknown keys list the accepted ones."""
    lines = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            accepted = ", ".join(_fields_at(model, err["loc"][:-1]))
            lines.append(f"unknown {what} '{prefix}{loc}'; accepted: {accepted}")
        elif err["type"] == "missing":
            lines.append(f"missing required {what} '{prefix}{loc}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            where = f"{prefix}{loc}: " if loc else ""
            shown = "" if not loc else f" (got {err.get('input')!r})"
            lines.append(f"{where}{msg}{shown}")
    return "; ".join(lines)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        if isinstance(part, int):  # an item of a list of sections (kube.volumes.0)
            continue
        annotation = model.model_fields[part].annotation
        # an optional section (`Section | None`) lists the section's keys
        annotation = next((a for a in typing.get_args(annotation)
                           if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# Shared with the other spec of the same style (jobs/training/train_spec.py: `corpusmill train`).
StrictModel = _Strict
resolve_path = _resolve
