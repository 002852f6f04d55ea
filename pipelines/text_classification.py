"""text-classification: one label per text from a sequence-classification head.

Input columns:  text (string)
Output columns: label  string                                   best label
                score  float32                                  its score
                labels list<struct<label: string, score: float32>>  the `top_k` best, best first
                       (always present, one pair at the default top_k=1, so the schema never
                       changes with options)
Semantics follow transformers' text-classification pipeline: scores are softmax for
single-label models, sigmoid for multi-label or one-label models, raw for regression, unless
`function_to_apply` says otherwise; ties rank the lower label index first.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from corpusmill.pipelines.base import (
    EvaluateOptions, ModelMismatch, Panel, Task, TaskOptions, sigmoid, softmax, top_k_indices,
)
from corpusmill.pipelines.metrics import classification_metrics
from corpusmill.pipelines.outcomes import require_string_gold
from corpusmill.pipelines.registry import register

LABEL_SCORE = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())])


class TextClassificationOptions(TaskOptions):
    top_k: int = Field(1, ge=1, description="How many (label, score) pairs go into `labels`, "
                                             "best first; `label` and `score` hold the best one.")
    function_to_apply: Literal["default", "softmax", "sigmoid", "none"] = Field(
        "default", description="How logits become scores; `default` picks as transformers does "
                               "(softmax single-label, sigmoid multi-label, none regression).")


def score_function(config: Any, requested: str) -> str:
    """The function transformers' pipeline applies to this model's logits."""
    if requested != "default":
        return requested
    problem_type = getattr(config, "problem_type", None)
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def scores_from_logits(logits: np.ndarray, function: str) -> np.ndarray:
    """(batch, num_labels) logits -> scores."""
    logits = logits.astype(np.float32)
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return logits


class TextClassification(Task):
    name = "text-classification"
    summary = "Label each text with a sequence-classification model (sentiment, topic, ...)."
    input_columns = ("text",)
    Options = TextClassificationOptions
    typed_outputs = True
    decode_uses_tokenizer = False

    def output_fields(self):
        return [pa.field("label", pa.string()), pa.field("score", pa.float32()),
                pa.field("labels", pa.list_(LABEL_SCORE))]

    def check_model(self, config, options):
        architectures = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in architectures):
            found = ", ".join(architectures) or f"a bare {config.model_type} model"
            raise ModelMismatch(
                f"text-classification needs a checkpoint with a sequence-classification head "
                f"(config.architectures ending in 'ForSequenceClassification'); this one is "
                f"{found}. Use a fine-tuned classifier, or task 'zero-shot-classification' to "
                f"label texts with an encoder that has no classification head.")
        if options.top_k > config.num_labels:
            raise ModelMismatch(
                f"options.top_k={options.top_k} but the model has {config.num_labels} labels; "
                f"set top_k between 1 and {config.num_labels}.")

    def model_class(self):
        from transformers import AutoModelForSequenceClassification
        return AutoModelForSequenceClassification

    def graph_forward(self, model, tensors, state, options):
        return {"logits": model(**tensors).logits}  # (batch, num_labels)

    def decode(self, rows, options, config, tokenizer):
        scores = scores_from_logits(rows.stacked("logits"),  # (rows, num_labels)
                                    score_function(config, options.function_to_apply))
        best = top_k_indices(scores, options.top_k)  # (rows, top_k)
        names = np.array([config.id2label[i] for i in range(scores.shape[1])], dtype=object)
        best_scores = np.take_along_axis(scores, best, axis=1).astype(np.float32)
        pairs = pa.StructArray.from_arrays(
            [pa.array(names[best].reshape(-1), pa.string()),
             pa.array(best_scores.reshape(-1), pa.float32())], fields=list(LABEL_SCORE))
        offsets = np.arange(0, best.size + 1, options.top_k, dtype=np.int32)
        return {"label": pa.array(names[best[:, 0]], pa.string()),
                "score": pa.array(best_scores[:, 0], pa.float32()),
                "labels": pa.ListArray.from_arrays(pa.array(offsets), pairs)}

    Evaluate = EvaluateOptions  # gold: the expected label (string)

    def report_facts(self, outputs):
        return {"label": outputs.column("label").to_pylist(),
                "score": outputs.column("score").to_pylist()}

    def report_panels(self, options):
        return [Panel("counts", "label", "Labels"),
                Panel("histogram", "score", "Score of the best label")]

    def check_gold(self, gold, evaluate, options):
        require_string_gold(gold, self.name)

    def evaluate(self, rows, evaluate, options):
        return classification_metrics(rows.gold, rows.outputs["label"])


register(TextClassification())
