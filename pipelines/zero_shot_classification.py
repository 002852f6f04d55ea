"""zero-shot-classification: rank candidate labels for each text without a trained head.

Mode `embedding-similarity` (the one available now): texts and the hypotheses built from the
labels (`hypothesis_template.format(label)`) are embedded by the same encoder, pooled (the
folder's sentence-transformers pooling when it declares one, else mean) and L2-normalised; a
label's score is the cosine similarity between text and hypothesis, in [-1, 1].

Input columns:  text (string)
Output columns: labels list<string>   all candidate labels, best first
                scores list<float32>  their cosine similarities, same order
"""
from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator

from pipelines.base import ModelMismatch, Task, TaskOptions, top_k_indices
from pipelines.pooling import folder_pooling, pool
from pipelines.registry import register


class ZeroShotOptions(TaskOptions):
    candidate_labels: list[str] = Field(
        ..., min_length=1, description="The labels to rank, e.g. [sports, politics, food].")
    hypothesis_template: str = Field(
        "This example is {}.", description="Text embedded for each label; `{}` is the label.")
    mode: Literal["embedding-similarity"] = Field(
        "embedding-similarity", description="How labels are scored.")
    pooling: Literal["auto", "mean", "cls", "max"] = Field(
        "auto", description="Token pooling; `auto` uses the model folder's sentence-transformers "
                            "config, else mean.")

    @field_validator("candidate_labels")
    @classmethod
    def _labels_distinct(cls, labels):
        if any(not label.strip() for label in labels):
            raise ValueError("candidate_labels must not contain empty labels")
        if len(set(labels)) != len(labels):
            raise ValueError(f"candidate_labels must be distinct, got {labels}")
        return labels

    @field_validator("hypothesis_template")
    @classmethod
    def _template_has_slot(cls, template):
        if "{}" not in template:
            raise ValueError(f"hypothesis_template must contain '{{}}' where the label goes, "
                             f"got {template!r}")
        return template


class ZeroShotClassification(Task):
    name = "zero-shot-classification"
    summary = "Rank candidate labels for each text by embedding similarity, no trained head needed."
    input_columns = ("text",)
    Options = ZeroShotOptions

    def output_fields(self):
        return [pa.field("labels", pa.list_(pa.string())),
                pa.field("scores", pa.list_(pa.float32()))]

    def check_model(self, config, options):
        from transformers import AutoModel

        if getattr(config, "is_encoder_decoder", False) or type(config) not in AutoModel._model_mapping:
            raise ModelMismatch(
                f"zero-shot-classification (embedding-similarity) needs an encoder model such as "
                f"BERT or a sentence-transformers folder; this one is a {config.model_type} model.")

    def model_class(self):
        from transformers import AutoModel
        return AutoModel

    def prepare(self, model, tokenizer, options, model_ref, revision):
        declared = folder_pooling(model_ref, revision)
        mode = options.pooling if options.pooling != "auto" else (declared or ("mean", True))[0]
        hypotheses = [options.hypothesis_template.format(label) for label in options.candidate_labels]
        enc = tokenizer(hypotheses, padding=True, truncation=True, return_tensors="pt")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        state = {"pooling": mode}
        state["label_embeddings"] = _embed(model, enc, mode)  # (num_labels, hidden)
        return state

    def forward(self, model, tensors, state, options):
        embeddings = _embed(model, tensors, state["pooling"])  # (batch, hidden)
        similarities = embeddings @ state["label_embeddings"].T  # (batch, num_labels)
        return {"similarities": similarities.float().cpu().numpy()}

    def decode(self, rows, options, config, tokenizer):
        similarities = rows.stacked("similarities")  # (rows, num_labels)
        order = top_k_indices(similarities, similarities.shape[1])
        labels = [[options.candidate_labels[i] for i in row] for row in order]
        scores = [row_sims[row].tolist() for row_sims, row in zip(similarities, order)]
        return {"labels": labels, "scores": scores}


def _embed(model, tensors, mode):
    import torch.nn.functional as F

    hidden = model(**tensors).last_hidden_state  # (batch, seq, hidden)
    return F.normalize(pool(hidden, tensors["attention_mask"], mode).float(), p=2, dim=-1)


register(ZeroShotClassification())
