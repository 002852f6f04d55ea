"""What the operators need to know about a job, resolved once on the driver by the preflight
(`jobs/preflight.py`) and shipped to every task and actor. Plain data: picklable, no models."""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from corpusmill.spec import JobSpec
from corpusmill.pipelines.base import Task, TaskOptions
from corpusmill.pipelines.registry import get_task

# Columns that live only between operators; never written.
INPUT_IDS = "_cm_input_ids"            # list<list<int32>>: a row's windows of token ids
TOKEN_TYPE_IDS = "_cm_token_type_ids"  # list<list<int32>>, or null
EXTRAS = "_cm_extras"                  # binary: pickled per-row data from encode for decode
TRUNCATED = "_cm_truncated"            # bool: encode cut the row's input to the window
RAW = "_cm_raw"                        # binary: pickled list (one per window) of raw outputs,
                                       # for tasks whose outputs have no fixed shape
RAW_PREFIX = "_cm_raw:"                # typed raw outputs (operators/raw_outputs.py)
WINDOW_LENGTHS = "_cm_window_lengths"  # list<int32>: tokens of each of a row's windows
ERROR = "error"


@dataclass(frozen=True)
class JobPlan:
    spec: JobSpec
    model_ref: str                   # local folder or hub id that `from_pretrained` takes
    max_length: int                  # tokens per input after truncation
    id_column: str                   # the spec's id column, or the generated `row_id`
    input_columns: dict[str, str]    # task input -> corpus column
    kept_columns: list[str]          # corpus columns copied to the output
    read_schema: pa.Schema           # schema of blocks leaving the reader
    output_schema: pa.Schema         # schema of the written files, provenance in its metadata
    num_gpus: float                  # per inference actor
    min_actors: int                  # inference actors the pool starts with (its floor)
    max_actors: int                  # inference actors it may grow to (== min_actors: fixed)
    torch_threads: int               # per CPU inference actor
    model_config: Any                # the checkpoint's transformers config (labels, problem type)
    run_id: str = field(default="")
    stats_name: str = field(default="")  # the run's statistics actor (operators/stats.py)
    # what runs the model (`operators/engines/`): "torch" or "onnxruntime", settled on the
    # driver by `engines.prepare_backend`; for onnxruntime, the exported graph to load
    backend: str = field(default="torch")
    graph: Any = field(default=None)  # onnx_export.GraphRef, or None
    pad_id: int | None = field(default=None)  # the tokenizer's padding id, when known
    # tokenize inside the inference actors (True) or in tasks before them (False); settled on
    # the driver from `resources.tokenize` and the placement (jobs/run.py)
    tokenize_in_actor: bool = field(default=False)
    # equal for the tasks of one job whose tokenization is the same (tokenizer content, encode,
    # input columns): a job with several tasks tokenizes once for them; None: never shared
    share_key: str | None = field(default=None)
    # CPUs Ray reserves per inference actor, settled with the placement (None: the spec's
    # resources.cpus_per_actor; a job with several tasks shares the default among its pools)
    actor_cpus: float | None = field(default=None)

    @property
    def cpus_per_actor(self) -> float:
        return self.actor_cpus or self.spec.resources.cpus_per_actor

    def __post_init__(self):
        object.__setattr__(self, "model_config", LazyConfig.wrap(self.model_config))

    @property
    def task(self) -> Task:
        return get_task(self.spec.task)

    @property
    def options(self) -> TaskOptions:
        return self.spec.task_options

    @property
    def task_output_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.task.output_fields())


@dataclass(frozen=True)
class SeveralPlan:
    """A job with several tasks (`tasks:` in its spec): each task's own plan, what its
    single-task job would run (read_schema: the job's, shared), and the joined output.
    Output columns: id, kept columns, then each task's output columns and its error,
    prefixed `<name>_`, then `error` (null when every task succeeded)."""
    spec: JobSpec
    tasks: dict[str, JobPlan]        # name -> plan, in the spec's order
    id_column: str
    kept_columns: list[str]
    read_schema: pa.Schema           # id, every task's input columns, kept columns
    output_schema: pa.Schema
    run_id: str = field(default="")
    stats_name: str = field(default="")

    def share_groups(self) -> list[list[str]]:
        """The tasks by tokenization, in order: tasks with the same `share_key` together (one
        tokenization serves them all), every other task alone."""
        groups: dict[str, list[str]] = {}
        for name, plan in self.tasks.items():
            groups.setdefault(plan.share_key or f"\0{name}", []).append(name)
        return list(groups.values())


def _without_torch(config: Any) -> Any:
    """A shallow copy of `config` (and of configs inside it) whose torch dtypes are their names
    ("float32", as transformers also accepts), so unpickling it needs no torch: tokenize and
    postprocess workers run without it (operators/light_workers.py)."""
    import copy

    state = getattr(config, "__dict__", None)
    if state is None:
        return config
    changed = {}
    for key, value in state.items():
        if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
            changed[key] = str(value).removeprefix("torch.")
        elif hasattr(value, "to_dict") and hasattr(value, "model_type"):
            inner = _without_torch(value)
            if inner is not value:
                changed[key] = inner
    if not changed:
        return config
    clone = copy.copy(config)
    clone.__dict__.update(changed)
    return clone


class LazyConfig:
    """A transformers config that travels pickled as bytes and is rebuilt on first use, so
    unpickling a JobPlan imports neither transformers nor torch (an onnxruntime actor needs
    neither). Attribute access reads the config's."""

    def __init__(self, config: Any = None, blob: bytes | None = None):
        self._config, self._blob = config, blob

    @classmethod
    def wrap(cls, config: Any) -> "LazyConfig | None":
        return config if config is None or isinstance(config, LazyConfig) else cls(config)

    def unwrap(self) -> Any:
        if self._config is None:
            self._config = pickle.loads(self._blob)
        return self._config

    def __reduce__(self):
        blob = self._blob if self._blob is not None else pickle.dumps(_without_torch(self._config))
        return (LazyConfig, (None, blob))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_config", "_blob"):
            raise AttributeError(name)
        return getattr(self.unwrap(), name)
