"""What a task is: its input columns, typed options, fixed output schema, and the pure pieces
that encode rows for a model and decode the model's outputs into output columns.

A task module subclasses `Task` and registers one instance in `pipelines.registry`. Operators
(`operators/`) drive these pieces; nothing here knows about Ray.

Data flow of one batch of rows through a task:
    texts (input name -> list[str])  --encode-->  per row, one or more windows of token ids
                                                  (long inputs split by tasks that support it),
                                                  plus per-row extras decode will need (offsets)
    padded windows (batch, seq)      --forward--> raw outputs: name -> array (batch, ...); names
                                                  in `token_outputs` have the sequence as axis 1
                                                  and are cut back to each window's own length
    every window's raw outputs,      --decode-->  output column values (fixed by `output_fields`)
    the extras and the input texts
Windows of all rows in a batch are batched together by length, so a row's windows may run in
different forward passes; decode always sees all of a row's windows, in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field


class TaskOptions(BaseModel):
    """Base of every task's options: typed, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelMismatch(ValueError):
    """The model's architecture or head does not fit the task; the message says what would."""


@dataclass
class Encoded:
    """Model inputs for one batch of rows, ready for padding. Entry i is row i's windows; each
    window is a ragged list of token ids. Most tasks give each row one window: `single`."""

    windows: list[list[list[int]]]                       # (row, window, token)
    token_type_ids: list[list[list[int]]] | None = None  # same shape, or None
    extras: list[Any] | None = None      # per row: picklable data decode needs (e.g. offsets)
    errors: list[str | None] | None = None  # per row: why it cannot be processed, else None
    truncated: list[bool] | None = None  # per row: the input was cut to fit the model

    @classmethod
    def single(cls, input_ids: list[list[int]], token_type_ids: list[list[int]] | None = None,
               **kwargs) -> "Encoded":
        """One window per row."""
        return cls(windows=[[ids] for ids in input_ids],
                   token_type_ids=None if token_type_ids is None else [[t] for t in token_type_ids],
                   **kwargs)


class Rows:
    """What decode sees for a batch of rows that were all processed without error.

    `outputs`: per row, per window, raw output name -> array. Given either as that list, or
    as `raw`: typed columns read in place (operators/raw_outputs.py), from which `stacked`
    takes (rows, ...) arrays without per-row work and `outputs` is built on first use."""

    def __init__(self, outputs: list[list[dict[str, np.ndarray]]] | None = None,
                 texts: dict[str, list[str]] | None = None, extras: list[Any] | None = None,
                 raw: Any = None):
        if (outputs is None) == (raw is None):
            raise ValueError("Rows takes outputs or raw, one of them")
        self._outputs = outputs
        self.raw = raw
        self.texts = texts or {}                # input name -> the rows' input texts
        self.extras = extras if extras is not None else []  # per row, what encode kept

    @property
    def outputs(self) -> list[list[dict[str, np.ndarray]]]:
        if self._outputs is None:
            self._outputs = self.raw.per_row()
        return self._outputs

    def __len__(self) -> int:
        return len(self.raw) if self._outputs is None else len(self._outputs)

    def stacked(self, name: str) -> np.ndarray:
        """(rows, ...) from each row's single window: for one-window-per-row tasks."""
        if self._outputs is None:
            stacked = self.raw.stacked(name)
            if stacked is not None:
                return stacked
        return np.stack([windows[0][name] for windows in self.outputs])


# Written by tasks whose inputs can be cut to the model's window (generation, seq2seq): true for a
# row whose input was truncated, so truncation is never silent (the run summary counts them).
INPUT_TRUNCATED = "input_truncated"
TRUNCATED_FIELD = pa.field(INPUT_TRUNCATED, pa.bool_())


def truncating_key(max_length: int, lower: bool = False) -> str:
    """The `encode_key` of the default `encode`: one `text` input (lower-cased first, where
    `lower`) truncated to `max_length` tokens, one window per row."""
    return f"text:truncate:{max_length}" + (":lower" if lower else "")


class Task:
    """One NLP task. Subclasses set the class attributes and implement the methods below."""

    name: ClassVar[str]
    summary: ClassVar[str]
    input_columns: ClassVar[tuple[str, ...]]
    Options: ClassVar[type[TaskOptions]]
    # raw outputs of `forward` whose axis 1 is the token axis: cut to each window's length
    token_outputs: ClassVar[frozenset[str]] = frozenset()
    # where windows are padded in a batch: "right", or "left" (decoder-only generation, whose
    # new tokens must follow each prompt's last token)
    padding_side: ClassVar[str] = "right"
    # True: `forward` takes `row_keys=` (per window, its row's id as a string), e.g. to seed a
    # per-row random generator that does not depend on batching
    uses_row_keys: ClassVar[bool] = False
    # True: every raw output of `forward` has, per window, a shape fixed by the model and the
    # options (for `token_outputs`, after the token axis), so outputs travel from the actor as
    # typed Arrow columns (operators/raw_outputs.py); False: as one pickle per row
    typed_outputs: ClassVar[bool] = False
    # False: `decode` never looks at its `tokenizer` argument (given None), so postprocess
    # workers load no tokenizer (and import no transformers) for the task
    decode_uses_tokenizer: ClassVar[bool] = True
    # options whose values `graph_forward` bakes into the computation (top-k, pooling, label
    # embeddings): an exported graph is reused only for the same values of these
    graph_options: ClassVar[tuple[str, ...]] = ()

    def output_fields(self) -> list[pa.Field]:
        """The task's output columns: fixed per task, shaped neither by options nor by data."""
        raise NotImplementedError

    def output_fields_for_model(self, config: Any) -> list[pa.Field]:
        """The output columns for one model (`config`: its transformers config), as written.
        The same names as `output_fields`; a task overrides this only where a column's type
        depends on the model, never on data (an embedding's width is the hidden size)."""
        return self.output_fields()

    def check_model(self, config: Any, options: TaskOptions) -> None:
        """Raise `ModelMismatch` (with the fix) when a model config cannot serve this task."""
        raise NotImplementedError

    def model_class(self) -> type:
        """The transformers auto class that loads a checkpoint for this task."""
        raise NotImplementedError

    def prepare(self, model: Any, tokenizer: Any, options: TaskOptions, model_ref: str,
                revision: str | None) -> Any:
        """Per-actor state computed once after loading (e.g. label embeddings). Default: none."""
        return None

    def encode(self, tokenizer: Any, texts: dict[str, list[str]], options: TaskOptions,
               max_length: int) -> Encoded:
        """Token windows for a batch of rows. `texts[name][i]` is row i's value for input
        `name`. Default: one `text` input, truncated to `max_length` as transformers' pipelines
        do, one window per row."""
        enc = tokenizer(texts["text"], truncation=True, max_length=max_length)
        return Encoded.single(enc["input_ids"], enc.get("token_type_ids"))

    def encode_key(self, tokenizer: Any, options: TaskOptions, max_length: int) -> str | None:
        """What `encode` makes of a row beyond the tokenizer's own behaviour, as a string: two
        tasks of one job whose keys are equal, over tokenizers of the same content and the
        same input columns, get the same windows, extras and truncation flags from their
        `encode`, so the job tokenizes once for both. None: never shared. Default: the
        default `encode` (one `text` input truncated to `max_length`); a task that overrides
        `encode` shares only if it overrides this too."""
        if type(self).encode is not Task.encode:
            return None
        return truncating_key(max_length)

    def window_cost(self, length: int, options: TaskOptions) -> int:
        """Tokens a window of `length` tokens occupies in a batch, for the `max_tokens` budget.
        Default: its length; generation adds the tokens it will generate."""
        return length

    def forward(self, model: Any, tensors: dict[str, Any], state: Any,
                options: TaskOptions) -> dict[str, np.ndarray]:
        """Run the model on one padded batch of windows (`input_ids`, `attention_mask`, maybe
        `token_type_ids`: (batch, seq) tensors on the model's device, padded on
        `padding_side`); return numpy arrays shaped (batch, ...). Reduce here what can be
        reduced (top-k, pooling): raw outputs travel between processes. Tasks that set
        `uses_row_keys` also get `row_keys=` (list[str], one per window).
        Default, for tasks with a `graph_forward`: `finish` of its outputs as numpy."""
        if not self.has_graph():
            raise NotImplementedError
        return self.finish(to_numpy(self.graph_forward(model, tensors, state, options)), options)

    def graph_forward(self, model: Any, tensors: dict[str, Any], state: Any,
                      options: TaskOptions) -> dict[str, Any]:
        """The single forward pass of a task as torch operations only: the model call and the
        reductions after it, from (batch, seq) tensors to tensors (batch, ...), with no Python
        control flow that depends on values or shapes. Tasks that define it run on every
        engine: the torch engine runs it eagerly, the onnxruntime engine runs it as an ONNX
        graph exported once (`operators/engines/onnx_export.py`, which bakes `state` and the
        `graph_options` into it). Tasks without it (generation: a loop) run on torch only."""
        raise NotImplementedError

    def finish(self, outputs: dict[str, np.ndarray], options: TaskOptions) -> dict[str, np.ndarray]:
        """numpy after `graph_forward` on the inference actor, where a shape depends on the
        data (fill-mask packs its per-position predictions mask by mask). Default: as is."""
        return outputs

    @classmethod
    def has_graph(cls) -> bool:
        """Whether the task defines `graph_forward` (and so runs on onnxruntime)."""
        return cls.graph_forward is not Task.graph_forward

    def combine_windows(self, model: Any, tokenizer: Any, state: Any, options: TaskOptions,
                        max_length: int, outputs: dict[int, list[dict[str, np.ndarray]]],
                        device: str) -> dict[int, list[dict[str, np.ndarray]] | str]:
        """A second model pass on the inference actor, once every window of a block has run:
        `outputs` maps each row (index in the block) to its windows' raw outputs; return, per
        row, the raw outputs `decode` will see, or a string: why that row failed (it becomes
        the row's `error`). Default: unchanged. Summarization's `long_input: chunk` uses it to
        summarise the joined summaries of a long text's windows."""
        return outputs

    def decode(self, rows: Rows, options: TaskOptions, config: Any,
               tokenizer: Any) -> dict[str, list]:
        """Output column values (one list per output field, one entry per row)."""
        raise NotImplementedError

    # ---- what the outputs mean: the run report's summaries and the metric against gold ----
    # The job spec's `evaluate` block, validated by the task (None: no metric against gold).
    Evaluate: ClassVar[type["EvaluateOptions"] | None] = None
    # task inputs `evaluate` reads besides the outputs (NER maps spans to the text's words):
    # they must be kept in the output
    evaluate_inputs: ClassVar[tuple[str, ...]] = ()

    def report_facts(self, outputs: pa.Table) -> dict[str, list]:
        """Per-row values the run report summarises (`report_panels` names them), from a table
        of successful output rows (the task's output columns). A value may be a list (one row,
        several entities). Default: none."""
        return {}

    def report_panels(self, options: TaskOptions) -> list["Panel"]:
        """How the report shows `report_facts`: label counts, score histograms, shares."""
        return []

    def check_gold(self, gold: pa.DataType, evaluate: "EvaluateOptions",
                   options: TaskOptions) -> None:
        """Raise ValueError (with the fix) when a gold column of this type cannot be scored."""

    def evaluate(self, rows: "GoldRows", evaluate: "EvaluateOptions",
                 options: TaskOptions) -> dict:
        """Metrics of `rows` (rows with gold and without error) against their gold values,
        computed with the field's standard library (`pipelines/metrics.py`)."""
        raise NotImplementedError


class EvaluateOptions(TaskOptions):
    """A job's `evaluate` block: the gold column, plus the task's own gold options."""

    gold: str = Field(..., min_length=1, description="Column holding the expected output "
                      "(kept from the corpus); rows where it is null are left out and counted.")


@dataclass
class GoldRows:
    """What a task's `evaluate` scores: rows that have a gold value and no error."""

    outputs: dict[str, list]    # output column -> one value per row
    gold: list                  # the gold column's values (never null)
    texts: dict[str, list[str]] = field(default_factory=dict)  # task input -> values, if kept
    ids: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.gold)


@dataclass(frozen=True)
class Panel:
    """One plot of a run report, over a per-row value of `report_facts`:
    `counts`    how often each value occurs (a bar per value, the most frequent first);
                `per_rows`: shown as occurrences per that many rows (entities per 1,000 rows)
    `histogram` the distribution of a number; `range` when known (probabilities: (0, 1))
    `share`     the share of rows where a boolean value is true (empty answers)"""

    kind: Literal["counts", "histogram", "share"]
    fact: str
    title: str
    range: tuple[float, float] | None = None
    per_rows: int | None = None


def to_numpy(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    """torch tensors on any device -> numpy on the host; floating point as float32."""
    return {name: (t.float() if t.is_floating_point() else t).cpu().numpy()
            for name, t in tensors.items()}


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax, as transformers' pipelines compute it."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores per row, best first; ties keep the lower index first."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]
