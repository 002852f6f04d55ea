"""Training text-classification: a sequence-classification head on the base encoder.

Fields:  text   string
         label  string (or integer) -> single-label; list<string> -> multi-label (each row any
                number of labels, sigmoid per label: `problem_type: multi_label_classification`)
Labels:  `options.labels` in that id order, else the labels of the training rows, sorted. The
         trained config carries `id2label` / `label2id`, so `corpusmill run` (text-
         classification) and transformers' pipeline print label names.
Metric:  macro F1 over the labels (single-label: accuracy too; multi-label: a label is
         predicted when its sigmoid is above 0.5).
Texts longer than `max_length` tokens are cut to it, as inference cuts them."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from corpusmill.pipelines.base import TaskOptions
from corpusmill.pipelines.training.base import (
    LENGTH, EvalData, Examples, TrainingDataError, TrainingTask, first_windows,
)
from corpusmill.pipelines.training.scores import classification_scores, multi_label_scores

MULTI_LABEL = "multi_label_classification"


class TextClassificationTrainingOptions(TaskOptions):
    labels: list[str] | None = Field(None, description="The label set in id order; default: "
                                     "the labels found in the training rows, sorted. Rows with "
                                     "a label outside it are refused.")

    @field_validator("labels")
    @classmethod
    def _distinct(cls, value):
        if value is not None and (len(set(value)) != len(value) or len(value) < 2
                                  or any(not v.strip() for v in value)):
            raise ValueError(f"`labels` must be at least 2 distinct, non-blank labels, got "
                             f"{value}")
        return value


def is_multi_label(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)


def _label_type_ok(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) \
        or pa.types.is_integer(arrow_type)


class TextClassificationTraining(TrainingTask):
    name = "text-classification"
    summary = "a classification head: one label per text (string column) or several (lists)"
    field_sets = (("text", "label"),)
    Options = TextClassificationTrainingOptions
    metric = "macro_f1"
    label_field = "label"

    def __init__(self):
        # set by check_types from the label column's type; a configured instance travels with
        # the training plan to every worker
        self.multi_label = False

    def check_types(self, types):
        label = types["label"]
        inner = label.value_type if is_multi_label(label) else label
        if not _label_type_ok(inner):
            raise ValueError(f"text-classification labels must be strings (or integers), or "
                             f"lists of them for multi-label rows; the label column is {label}")
        self.multi_label = is_multi_label(label)

    def label_values(self, column):
        if is_multi_label(column.type):
            column = pc.list_flatten(column)
        return {str(v) for v in pc.unique(column.drop_null()).to_pylist()}

    def label_list(self, found, options):
        if options.labels is None:
            if len(found) < 2:
                raise ValueError(f"the training rows hold {len(found)} distinct label(s) "
                                 f"({', '.join(sorted(found)) or 'none'}); a classifier needs "
                                 f"at least 2")
            return sorted(found)
        unknown = sorted(found - set(options.labels))
        if unknown:
            raise ValueError(f"the training rows hold label(s) not in options.labels: "
                             f"{', '.join(map(repr, unknown[:10]))}; add them to labels or fix "
                             f"the rows")
        return list(options.labels)

    def model_class(self):
        from transformers import AutoModelForSequenceClassification
        return AutoModelForSequenceClassification

    def model_kwargs(self, labels, options, config):
        kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {label: i for i, label in enumerate(labels)}}
        if self.multi_label:
            kwargs["problem_type"] = MULTI_LABEL
        return kwargs

    def label_feature_types(self, labels):
        return {"labels": pa.list_(pa.float32()) if self.multi_label else pa.int64()}

    def encode(self, tokenizer, rows, labels, options, config, max_length):
        enc, truncated = first_windows(tokenizer, rows["text"], max_length)
        label2id = {label: i for i, label in enumerate(labels)}
        columns = {name: enc[name] for name in ("input_ids", "token_type_ids") if name in enc}
        columns["labels"] = [self._target(i, value, label2id)
                             for i, value in enumerate(rows["label"])]
        columns[LENGTH] = [len(ids) for ids in columns["input_ids"]]
        return Examples(columns, rows=list(range(len(rows["text"]))), truncated=truncated)

    def _target(self, row, value, label2id):
        values = [str(v) for v in value] if self.multi_label else [str(value)]
        unknown = [v for v in values if v not in label2id]
        if unknown:
            raise TrainingDataError(row, f"label {unknown[0]!r} is not in the label set "
                                         f"({', '.join(label2id)})")
        if not self.multi_label:
            return label2id[values[0]]
        hot = [0.0] * len(label2id)
        for label in values:
            hot[label2id[label]] = 1.0
        return hot

    def collators(self, tokenizer, model, options, seed):
        from transformers import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tokenizer)
        return collator, collator

    def metrics(self, predictions, label_ids, data: EvalData, options):
        logits = np.asarray(predictions)  # (examples, num_labels)
        if self.multi_label:
            predicted = (logits > 0).astype(int)  # sigmoid > 0.5
            return multi_label_scores(np.asarray(label_ids).astype(int).tolist(),
                                      predicted.tolist())
        names = np.asarray(data.labels, dtype=object)
        return classification_scores(names[np.asarray(label_ids)].tolist(),
                                     names[logits.argmax(-1)].tolist())
