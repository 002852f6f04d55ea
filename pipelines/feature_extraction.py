"""feature-extraction: one embedding per text, pooled from the encoder's last hidden states.

Input columns:  text (string)
Output columns: embedding  fixed_size_list<float32>[dim]  the text's embedding; dim is the
                           model's hidden size (`config.hidden_size`), fixed per model

Semantics follow sentence-transformers on a sentence-transformers folder (its pooling, its
Normalize module, its `max_seq_length` and `do_lower_case`), and otherwise pool the hidden
states that transformers' feature-extraction pipeline returns (mean over the attention mask,
special tokens included; or the first token; or the maximum per dimension).
`pooling: auto` takes the folder's sentence-transformers pooling when it declares one, else
mean; `normalize: auto` L2-normalises when the folder has a Normalize module, else not.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from corpusmill.pipelines.base import (
    Encoded, ModelMismatch, Panel, Task, TaskOptions, truncating_key,
)
from corpusmill.pipelines.pooling import SUPPORTED_MODES, pool, read_sentence_transformers_folder
from corpusmill.pipelines.registry import register


class FeatureExtractionOptions(TaskOptions):
    pooling: Literal["auto", "mean", "cls", "max"] = Field(
        "auto", description="How token states become one vector: `auto` uses the model "
                            "folder's sentence-transformers pooling, else mean; `mean` over "
                            "the text's tokens, `cls` the first token, `max` per dimension.")
    normalize: bool | Literal["auto"] = Field(
        "auto", description="L2-normalise embeddings; `auto`: as the sentence-transformers "
                            "folder declares (a Normalize module), else false.")


def embedding_dim(config) -> int:
    """Width of the model's last hidden state, read from its config."""
    dim = getattr(config, "hidden_size", None)
    if not isinstance(dim, int) or dim < 1:
        raise ModelMismatch(f"feature-extraction needs the model's hidden size; this "
                            f"{config.model_type} config has no hidden_size")
    return dim


def resolve_pooling(options: FeatureExtractionOptions, model_ref: str,
                    revision: str | None) -> tuple[str, bool]:
    """(pooling mode, normalize) after `auto` is settled from the model folder."""
    folder = read_sentence_transformers_folder(model_ref, revision)
    mode = options.pooling
    if mode == "auto":
        mode = folder.pooling_modes[0] if folder and folder.pooling_modes else "mean"
    normalize = options.normalize
    if normalize == "auto":
        normalize = bool(folder and folder.normalize)
    return mode, normalize


def folder_problem(options: FeatureExtractionOptions, model_ref: str,
                   revision: str | None) -> str | None:
    """Why the folder's sentence-transformers declarations cannot be reproduced, else None."""
    folder = read_sentence_transformers_folder(model_ref, revision)
    if folder is None:
        return None
    if folder.other_modules:
        return (f"its sentence-transformers modules include {', '.join(folder.other_modules)}, "
                f"which feature-extraction does not apply (it pools the transformer's hidden "
                f"states, then optionally normalises); use sentence-transformers for this model")
    modes = folder.pooling_modes
    unsupported = len(modes) > 1 or (modes and modes[0] not in SUPPORTED_MODES)
    if options.pooling == "auto" and unsupported:
        return (f"its sentence-transformers pooling is {' + '.join(modes)}, which feature-"
                f"extraction does not offer; set options.pooling to one of "
                f"{', '.join(SUPPORTED_MODES)} to choose one explicitly")
    return None


class FeatureExtraction(Task):
    name = "feature-extraction"
    summary = "Embed each text as one vector (sentence-transformers pooling, or mean/cls/max)."
    input_columns = ("text",)
    Options = FeatureExtractionOptions
    typed_outputs = True
    decode_uses_tokenizer = False
    graph_options = ("pooling", "normalize")

    def output_fields(self):
        # the width is the model's hidden size; known once the model config is (see below)
        return [pa.field("embedding", pa.list_(pa.float32()))]

    def output_fields_for_model(self, config):
        return [pa.field("embedding", pa.list_(pa.float32(), embedding_dim(config)))]

    def check_model(self, config, options):
        from transformers import AutoModel

        if (getattr(config, "is_encoder_decoder", False)
                or type(config) not in AutoModel._model_mapping):
            raise ModelMismatch(
                f"feature-extraction needs an encoder model such as BERT or a sentence-"
                f"transformers folder; this one is a {config.model_type} model.")
        embedding_dim(config)
        # the folder (or hub id) the config came from; its s-t files are read at its default
        # revision, since check_model is not told the job's revision
        folder = getattr(config, "name_or_path", None)
        problem = folder_problem(options, folder, None) if folder else None
        if problem:
            raise ModelMismatch(problem)

    def model_class(self):
        from transformers import AutoModel
        return AutoModel

    def prepare(self, model, tokenizer, options, model_ref, revision):
        mode, normalize = resolve_pooling(options, model_ref, revision)
        return {"pooling": mode, "normalize": normalize, "dim": embedding_dim(model.config)}

    def encode_key(self, tokenizer, options, max_length):
        folder = read_sentence_transformers_folder(tokenizer.name_or_path, None)
        if folder is None:
            return truncating_key(max_length)
        if folder.max_seq_length:
            max_length = min(max_length, folder.max_seq_length)
        return truncating_key(max_length, bool(folder.do_lower_case))

    def encode(self, tokenizer, texts, options, max_length):
        # a sentence-transformers folder caps the length and may lower-case, as s-t does
        folder = read_sentence_transformers_folder(tokenizer.name_or_path, None)
        batch = texts["text"]
        if folder is not None:
            if folder.max_seq_length:
                max_length = min(max_length, folder.max_seq_length)
            if folder.do_lower_case:
                batch = [t.lower() for t in batch]
        enc = tokenizer(batch, truncation=True, max_length=max_length)
        return Encoded.single(enc["input_ids"], enc.get("token_type_ids"))

    def graph_forward(self, model, tensors, state, options):
        import torch.nn.functional as F

        hidden = model(**tensors).last_hidden_state  # (batch, seq, hidden)
        if hidden.shape[-1] != state["dim"]:
            raise ValueError(f"the model's hidden states are {hidden.shape[-1]} wide, but its "
                             f"config says hidden_size={state['dim']}")
        embeddings = pool(hidden, tensors["attention_mask"], state["pooling"]).float()
        if state["normalize"]:
            embeddings = F.normalize(embeddings, p=2, dim=-1)
        return {"embedding": embeddings}  # (batch, hidden)

    def decode(self, rows, options, config, tokenizer):
        return {"embedding": rows.stacked("embedding")}  # (rows, hidden)

    def report_facts(self, outputs):
        column = outputs.column("embedding").combine_chunks()
        width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
        values = column.flatten().to_numpy(zero_copy_only=False)
        if width is None:  # variable-size lists (never written by this task, but readable)
            return {"norm": [float(np.linalg.norm(v)) for v in column.to_pylist()]}
        norms = np.linalg.norm(values.reshape(-1, width).astype(np.float64), axis=1)
        return {"norm": norms.tolist()}

    def report_panels(self, options):
        return [Panel("histogram", "norm", "Embedding L2 norm")]


register(FeatureExtraction())
