"""What training a model for a task means, independent of how training runs: the fields a
labelled row provides, the label set, how a batch of rows becomes model examples (token ids and
labels aligned to them), the collators that pad examples, how a base checkpoint is shaped for
the task, and the validation metric. `operators/training/train.py` drives these pieces with transformers'
`Trainer`; nothing here knows about Ray or the Trainer.

Data flow:
    labelled rows (field -> list of values, a batch at a time)
        --encode-->  examples: feature name -> one value per example (an example is one model
                     input: a row, or one window of a long row), and per example its row
    examples of a batch --collator--> padded tensors
    validation predictions + examples + rows --metrics--> {metric name: value}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from corpusmill.pipelines.base import TaskOptions

# Bookkeeping columns of every example table (never given to the model).
ROW = "row"        # int64: the example's row, numbered within its split in read order
LENGTH = "length"  # int32: tokens the example occupies in a batch (the token budget's unit)
IGNORE = -100      # label value the loss ignores (special tokens, continuation sub-tokens)
TOKEN_FEATURES = {"input_ids": pa.list_(pa.int32()), "token_type_ids": pa.list_(pa.int8()),
                  "special_tokens_mask": pa.list_(pa.int8()), ROW: pa.int64(),
                  LENGTH: pa.int32()}


class TrainingDataError(ValueError):
    """A labelled row that cannot be trained on as given (tags that do not match the tokens, an
    answer that is not at its start). `row` is its index in the encoded batch; the message says
    what is wrong and how to fix it."""

    def __init__(self, row: int, message: str):
        super().__init__(message)
        self.row = row


@dataclass
class Examples:
    """The examples made from one batch of rows."""

    columns: dict[str, list]   # feature name -> one value per example
    rows: list[int]            # per example: the index of its row in the batch
    truncated: int = 0         # rows whose input was cut (their tail is not trained on)


@dataclass
class EvalData:
    """What the validation metric sees besides the predictions: the validation examples (same
    order as the predictions) and the validation rows they were made from."""

    examples: pa.Table         # features + ROW, in order
    rows: pa.Table             # the rows' training fields, in order (row i is ROW == i)
    labels: list[str] | None   # the label list (index -> name), for tasks with labels
    tokenizer: Any = None
    extra: dict = field(default_factory=dict)


class TrainingTask:
    """Training for one task. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]                       # the task the trained model serves
    summary: ClassVar[str]
    # the alternative sets of training fields a row provides; the first set whose fields the
    # spec maps (or the corpus has by name) is used
    field_sets: ClassVar[tuple[tuple[str, ...], ...]]
    Options: ClassVar[type[TaskOptions]]
    metric: ClassVar[str]                     # the validation metric that picks the best model
    greater_is_better: ClassVar[bool] = True
    label_field: ClassVar[str | None] = None  # the field whose values make the label set

    def check_types(self, types: dict[str, pa.DataType]) -> None:
        """Raise ValueError (with the fix) when a field's corpus column type does not fit."""

    def label_values(self, column: pa.ChunkedArray) -> set[str]:
        """The labels a column of `label_field` holds (nulls ignored)."""
        raise NotImplementedError

    def label_list(self, found: set[str], options: TaskOptions) -> list[str]:
        """The labels in id order, from those found in the training rows (and the options)."""
        raise NotImplementedError

    def model_class(self) -> type:
        """The transformers auto class that loads the base checkpoint with this task's head."""
        raise NotImplementedError

    def check_base_model(self, config: Any) -> None:
        """Raise ModelMismatch (with the fix) for a base checkpoint that cannot learn this task."""

    def model_kwargs(self, labels: list[str] | None, options: TaskOptions,
                     config: Any) -> dict:
        """Extra `from_pretrained` arguments (the label maps of a new head)."""
        return {}

    def finish_config(self, config: Any, labels: list[str] | None,
                      options: TaskOptions) -> None:
        """Record in the trained model's config what inference needs (e.g. a T5 prefix)."""

    def label_feature_types(self, labels: list[str] | None) -> dict[str, pa.DataType]:
        """Arrow type of each label feature `encode` returns (`labels`, `start_positions`, ...);
        token features have the types of TOKEN_FEATURES."""
        raise NotImplementedError

    def encode(self, tokenizer: Any, rows: dict[str, list], labels: list[str] | None,
               options: TaskOptions, config: Any, max_length: int) -> Examples:
        """Examples from a batch of rows (`rows[field][i]`, no nulls), with LENGTH among the
        columns. Raise TrainingDataError for a row whose labels cannot be used."""
        raise NotImplementedError

    def collators(self, tokenizer: Any, model: Any, options: TaskOptions,
                  seed: int) -> tuple[Any, Any]:
        """(training collator, validation collator): lists of examples -> padded tensors."""
        raise NotImplementedError

    def metrics(self, predictions: Any, label_ids: Any, data: EvalData,
                options: TaskOptions) -> dict[str, float]:
        """Validation metrics from the model's outputs on every validation example (in order;
        per-token outputs padded with -100 to a common length). Default: none (the validation
        loss alone)."""
        return {}

    def has_metrics(self) -> bool:
        return type(self).metrics is not TrainingTask.metrics

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the evaluation's own (e.g. perplexity from the loss)."""
        return {}

    def generation_metrics(self, model: Any, tokenizer: Any, rows: pa.Table, options: TaskOptions,
                           max_length: int) -> dict:
        """Metrics of what the trained model generates for the validation rows, computed once
        at the end (ROUGE, BLEU); default none."""
        return {}


def first_windows(tokenizer: Any, texts: list[str], max_length: int) -> tuple[dict, int]:
    """`texts` tokenized and cut to `max_length` tokens (special tokens kept), and how many
    were cut. Fast tokenizers do it in one pass (overflow windows mark the cut rows)."""
    if not getattr(tokenizer, "is_fast", False):
        full = tokenizer(texts)["input_ids"]
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        return dict(enc), sum(len(ids) > max_length for ids in full)
    enc = tokenizer(texts, truncation=True, max_length=max_length,
                    return_overflowing_tokens=True)
    owners = enc["overflow_to_sample_mapping"]
    first = [w for w, row in enumerate(owners) if w == 0 or owners[w - 1] != row]
    kept = {name: [enc[name][w] for w in first] for name in enc.keys()
            if name not in ("overflow_to_sample_mapping", "overflowing_tokens",
                            "num_truncated_tokens")}
    return kept, len(owners) - len(first)
