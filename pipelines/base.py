"""What a task is: its input columns, typed options, fixed output schema, and the pure pieces
that encode rows for a model and decode the model's outputs into output columns.

A task module subclasses `Task` and registers one instance in `pipelines.registry`. Operators
(`operators/`) drive these pieces; nothing here knows about Ray.

Data flow of one row through a task:
    texts (dict: input name -> str)  --encode-->  token ids (list[int], optionally token_type_ids)
    padded tensors (batch, seq)      --forward--> raw outputs: dict name -> (batch, ...) float32
    raw outputs of one row           --decode-->  output column values (fixed by `output_fields`)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict


class TaskOptions(BaseModel):
    """Base of every task's options: typed, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelMismatch(ValueError):
    """The model's architecture or head does not fit the task; the message says what would."""


@dataclass
class Encoded:
    """Token ids of one batch of rows, ready for padding (ragged lists, one entry per row)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None = None
    truncated: list[bool] | None = None


class Task:
    """One NLP task. Subclasses set the class attributes and implement the methods below."""

    name: ClassVar[str]
    summary: ClassVar[str]
    input_columns: ClassVar[tuple[str, ...]]
    Options: ClassVar[type[TaskOptions]]

    def output_fields(self) -> list[pa.Field]:
        """The task's output columns: fixed per task, shaped neither by options nor by data."""
        raise NotImplementedError

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
        """Token ids for a batch of rows. `texts[name][i]` is row i's value for input `name`.
        Default: one `text` input, truncated to `max_length` as transformers' pipelines do."""
        enc = tokenizer(texts["text"], truncation=True, max_length=max_length)
        return Encoded(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))

    def forward(self, model: Any, tensors: dict[str, Any], state: Any,
                options: TaskOptions) -> dict[str, np.ndarray]:
        """Run the model on one padded batch; return float32 arrays shaped (batch, ...)."""
        raise NotImplementedError

    def decode(self, raw: dict[str, np.ndarray], options: TaskOptions,
               config: Any) -> dict[str, list]:
        """Output column values for a batch of rows from their raw outputs (batch, ...)."""
        raise NotImplementedError


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
