"""zero-shot-classification: rank candidate labels for each text without a task-specific head.

Input columns:  text (string)
Output columns: labels list<string>   all candidate labels, best first
                scores list<float32>  their scores, same order (what a score is depends on mode)

Two modes (option `mode`; `auto`, the default, picks `nli` when the checkpoint has an NLI head,
else `embedding-similarity`):

`nli`, transformers' zero-shot-classification pipeline: a sequence-classification model
fine-tuned on natural language inference scores each (premise = text, hypothesis =
`hypothesis_template.format(label)`) pair; each pair is one window of the row, tokenized with
`truncation="only_first"` (the text is cut, never the hypothesis). The entailment label is the
first of `config.label2id` whose name starts with "entail" (any case); the contradiction logit is
index 0, or the last index when entailment is 0, exactly as transformers takes it. Scores:
    single-label (default): softmax over the candidate labels of their entailment logits
                            (the scores of a row sum to 1);
    multi_label: true, or a single candidate label: per label, softmax of (contradiction,
                            entailment), the entailment probability (each in [0, 1]).
Labels are ordered as the pipeline orders them (numpy argsort of the scores, reversed).
An empty text is scored with an empty premise (the transformers pipeline refuses "").

`embedding-similarity`, for encoder-only models without an NLI head: texts and hypotheses are
embedded by the same encoder, pooled (the folder's sentence-transformers pooling when it
declares one, else mean) and L2-normalised; a label's score is the cosine similarity of text
and hypothesis, in [-1, 1]; ties rank the earlier candidate label first. `multi_label` is refused.
"""
from __future__ import annotations

import functools
import inspect
import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from corpusmill.pipelines.base import (
    Encoded, EvaluateOptions, ModelMismatch, Panel, Task, TaskOptions, top_k_indices,
    truncating_key,
)
from corpusmill.pipelines.metrics import classification_metrics
from corpusmill.pipelines.outcomes import require_string_gold
from corpusmill.pipelines.pooling import folder_pooling, pool
from corpusmill.pipelines.registry import register

NLI = "nli"
EMBEDDING = "embedding-similarity"
ENTAIL_CONTRA = "entail_contra"   # nli raw output: (windows, 2) = (contradiction, entailment)
SIMILARITIES = "similarities"     # embedding raw output: (windows, num_candidate_labels)


class ZeroShotOptions(TaskOptions):
    candidate_labels: list[str] = Field(
        ..., min_length=1, description="The labels to rank, e.g. [sports, politics, food].")
    hypothesis_template: str = Field(
        "This example is {}.", description="The hypothesis built for each label; `{}` is the "
                                           "label.")
    mode: Literal["auto", "nli", "embedding-similarity"] = Field(
        "auto", description="How labels are scored: `nli` (entailment of each hypothesis by an "
                            "NLI classifier, as transformers' pipeline), `embedding-similarity` "
                            "(cosine of text and hypothesis embeddings); `auto`: nli when the "
                            "model has a sequence-classification head with an entailment label, "
                            "else embedding-similarity.")
    multi_label: bool = Field(
        False, description="nli only: score each label on its own (entailment vs contradiction) "
                           "instead of a softmax across labels.")
    pooling: Literal["auto", "mean", "cls", "max"] = Field(
        "auto", description="embedding-similarity only: token pooling; `auto` uses the model "
                            "folder's sentence-transformers config, else mean.")

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

    @model_validator(mode="after")
    def _multi_label_needs_nli(self):
        if self.multi_label and self.mode == EMBEDDING:
            raise ValueError("multi_label applies to mode nli only (embedding-similarity scores "
                             "are independent cosines already); drop multi_label or use mode: "
                             "nli with an NLI model")
        return self

    def hypotheses(self) -> list[str]:
        return [self.hypothesis_template.format(label) for label in self.candidate_labels]


# --- pure helpers: which mode a model serves, and the pipeline's NLI scores -----------------

def entailment_index(label2id: dict | None) -> int | None:
    """The entailment logit's index, as transformers' pipeline finds it: the first label whose
    lower-cased name starts with "entail". None when there is none (the pipeline would fall
    back to index -1 with a warning; we refuse such a model)."""
    for label, index in (label2id or {}).items():
        if str(label).lower().startswith("entail"):
            return int(index)
    return None


def contradiction_index(entailment: int, num_labels: int) -> int:
    """transformers' rule: index 0, or the last index when entailment is 0."""
    return num_labels - 1 if entailment == 0 else 0


def has_sequence_classification_head(architectures: list[str] | None) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in architectures or [])


def has_nli_head(architectures: list[str] | None, label2id: dict | None) -> bool:
    """A sequence-classification head whose labels name entailment."""
    return (has_sequence_classification_head(architectures)
            and entailment_index(label2id) is not None)


def resolve_mode(requested: str, architectures: list[str] | None, label2id: dict | None) -> str:
    """The mode `auto` stands for with this model; explicit modes pass through."""
    if requested != "auto":
        return requested
    return NLI if has_nli_head(architectures, label2id) else EMBEDDING


def config_mode(options: ZeroShotOptions, config: Any) -> str:
    return resolve_mode(options.mode, getattr(config, "architectures", None),
                        getattr(config, "label2id", None))


def nli_scores(entail_contra: np.ndarray, independent: bool) -> np.ndarray:
    """(rows, labels, 2) logits, (contradiction, entailment) per hypothesis -> (rows, labels)
    float32 scores as transformers' pipeline computes them: softmax of the entailment logits
    across labels, or (`independent`) of contradiction vs entailment per label. Shifted by
    the maximum, so large logits cannot overflow."""
    logits = entail_contra.astype(np.float32)
    if independent:
        pair = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return pair[..., 1] / pair.sum(axis=-1)
    entail = logits[..., 1]
    e = np.exp(entail - entail.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def pipeline_order(scores: np.ndarray) -> np.ndarray:
    """Indices best first, as the pipeline takes them: `reversed(scores.argsort())`."""
    return np.argsort(scores)[::-1]


# --- the task -------------------------------------------------------------------------------

class ZeroShotClassification(Task):
    name = "zero-shot-classification"
    summary = ("Rank candidate labels for each text: NLI entailment (as transformers' pipeline) "
               "or embedding similarity with an encoder, no trained head needed.")
    input_columns = ("text",)
    Options = ZeroShotOptions
    typed_outputs = True
    decode_uses_tokenizer = False
    # the label embeddings (embedding-similarity) are constants of the graph
    graph_options = ("candidate_labels", "hypothesis_template", "mode", "pooling")

    def output_fields(self):
        return [pa.field("labels", pa.list_(pa.string())),
                pa.field("scores", pa.list_(pa.float32()))]

    def check_model(self, config, options):
        architectures = getattr(config, "architectures", None) or []
        label2id = getattr(config, "label2id", None) or {}
        found = ", ".join(architectures) or f"a {config.model_type} model"
        fits = ("an NLI classifier (a *ForSequenceClassification checkpoint fine-tuned on NLI "
                "whose config.label2id names an 'entailment' label, e.g. "
                "facebook/bart-large-mnli) for mode nli, or an encoder such as BERT or a "
                "sentence-transformers folder for mode embedding-similarity")
        mode = config_mode(options, config)
        if mode == NLI:
            if not has_sequence_classification_head(architectures):
                raise ModelMismatch(
                    f"zero-shot-classification mode nli needs a sequence-classification model "
                    f"fine-tuned on NLI (config.architectures ending in "
                    f"'ForSequenceClassification'); this one is {found}. Use {fits}.")
            if entailment_index(label2id) is None:
                raise ModelMismatch(
                    f"zero-shot-classification mode nli needs the entailment label in "
                    f"config.label2id (a label starting with 'entail'), as transformers' "
                    f"pipeline does; this model's labels are {', '.join(map(str, label2id))}. "
                    f"Use an NLI model, fix its label2id, or use mode: embedding-similarity.")
            if config.num_labels < 2:
                raise ModelMismatch(
                    f"zero-shot-classification mode nli needs entailment and contradiction "
                    f"logits; this model has {config.num_labels} label. Use an NLI model.")
            return
        from transformers import AutoModel

        encoder = type(config) in AutoModel._model_mapping
        if getattr(config, "is_encoder_decoder", False) or not encoder:
            raise ModelMismatch(
                f"zero-shot-classification needs {fits}; this one is {found}"
                f"{' (mode embedding-similarity)' if options.mode == EMBEDDING else ''}.")
        if options.multi_label:  # mode auto that resolved to embedding-similarity
            raise ModelMismatch(
                f"multi_label needs mode nli, but this model ({found}) has no NLI head "
                f"(no 'entailment' label in config.label2id), so mode auto means "
                f"embedding-similarity. Drop multi_label, or use an NLI classifier.")

    def model_class(self):
        return NliOrEncoder

    def prepare(self, model, tokenizer, options, model_ref, revision):
        config = model.config
        mode = config_mode(options, config)
        if mode == NLI:
            entail = entailment_index(config.label2id)
            forward_kwargs = {}
            if "use_cache" in inspect.signature(model.forward).parameters:
                forward_kwargs["use_cache"] = False  # as the pipeline calls classifiers
            return {"mode": NLI, "forward_kwargs": forward_kwargs,
                    "columns": [contradiction_index(entail, config.num_labels), entail]}
        declared = folder_pooling(model_ref, revision)
        pooling = options.pooling if options.pooling != "auto" else (declared or ("mean", True))[0]
        encoder = model.base_model  # the bare encoder, also when a classifier was loaded
        enc = tokenizer(options.hypotheses(), padding=True, truncation=True, return_tensors="pt")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        return {"mode": EMBEDDING, "pooling": pooling, "encoder": encoder,
                "label_embeddings": _embed(encoder, enc, pooling)}  # (num_labels, hidden)

    def encode_key(self, tokenizer, options, max_length):
        if tokenizer_mode(tokenizer, options) == EMBEDDING:
            return truncating_key(max_length)
        return f"text:pairs:{max_length}:" + json.dumps(options.hypotheses())

    def encode(self, tokenizer, texts, options, max_length):
        if tokenizer_mode(tokenizer, options) == EMBEDDING:
            return super().encode(tokenizer, texts, options, max_length)
        return encode_pairs(tokenizer, texts["text"], options.hypotheses(), max_length)

    def graph_forward(self, model, tensors, state, options):
        if state["mode"] == NLI:
            logits = model(**tensors, **state["forward_kwargs"]).logits  # (batch, model labels)
            return {ENTAIL_CONTRA: logits[:, state["columns"]]}  # (batch, 2)
        embeddings = _embed(state["encoder"], tensors, state["pooling"])  # (batch, hidden)
        return {SIMILARITIES: embeddings @ state["label_embeddings"].T}  # (batch, num_labels)

    def decode(self, rows, options, config, tokenizer):
        labels_ = options.candidate_labels
        if config_mode(options, config) == NLI:
            logits = np.stack([_windows_output(windows, ENTAIL_CONTRA, len(labels_))
                               for windows in rows.outputs])  # (rows, labels, 2)
            scores = nli_scores(logits, independent=options.multi_label or len(labels_) == 1)
            orders = [pipeline_order(row) for row in scores]
        else:
            scores = np.stack([_windows_output(windows, SIMILARITIES, 1)[0]
                               for windows in rows.outputs])  # (rows, labels)
            orders = list(top_k_indices(scores, scores.shape[1]))
        return {"labels": [[labels_[i] for i in order] for order in orders],
                "scores": [row[order].tolist() for row, order in zip(scores, orders)]}

    Evaluate = EvaluateOptions  # gold: the expected label, one of the candidate labels

    def report_facts(self, outputs):
        return {"label": pc.list_element(outputs.column("labels"), 0).to_pylist(),
                "score": pc.list_element(outputs.column("scores"), 0).to_pylist()}

    def report_panels(self, options):
        return [Panel("counts", "label", "Best label"),
                Panel("histogram", "score", "Score of the best label")]

    def check_gold(self, gold, evaluate, options):
        require_string_gold(gold, self.name)

    def evaluate(self, rows, evaluate, options):
        """Classification metrics of the best label; gold values that are not candidate labels
        (never predictable) are counted."""
        predicted = [labels[0] for labels in rows.outputs["labels"]]
        candidates = set(options.candidate_labels)
        return {**classification_metrics(rows.gold, predicted),
                "gold_not_a_candidate": sum(g not in candidates for g in rows.gold)}


class NliOrEncoder:
    """`from_pretrained` for this task: the sequence-classification model when the checkpoint
    has an NLI head (nli mode; embedding-similarity then uses its `base_model`), else the bare
    encoder (AutoModel). The task contract gives `model_class()` no config, hence the choice
    made here, from the checkpoint's own config."""

    @staticmethod
    def from_pretrained(model_ref, **kwargs):
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        config = AutoConfig.from_pretrained(
            model_ref, revision=kwargs.get("revision"),
            trust_remote_code=kwargs.get("trust_remote_code", False))
        nli = has_nli_head(config.architectures, config.label2id)
        auto_class = AutoModelForSequenceClassification if nli else AutoModel
        return auto_class.from_pretrained(model_ref, config=config, **kwargs)


def encode_pairs(tokenizer, texts: list[str], hypotheses: list[str],
                 max_length: int) -> Encoded:
    """One window per (text, hypothesis) pair, hypotheses in candidate-label order, truncating
    only the text, as transformers' pipeline tokenizes. A row whose text cannot be cut enough
    (the hypothesis alone fills `max_length`) becomes a row error; its neighbours go on."""
    try:
        per_row, errors = _pair_windows(tokenizer, texts, hypotheses, max_length), None
    except Exception:  # noqa: BLE001 - the tokenizer refuses the whole batch: find the rows
        per_row, errors = [], []
        for text in texts:
            try:
                per_row += _pair_windows(tokenizer, [text], hypotheses, max_length)
                errors.append(None)
            except Exception as e:  # noqa: BLE001
                per_row.append(([], None))
                errors.append(f"the text cannot be paired with the hypotheses within "
                              f"max_length={max_length} tokens ({e}); shorten "
                              f"hypothesis_template or the labels, or raise batching.max_length")
    ok = [types for (_, types), e in zip(per_row, errors or [None] * len(per_row)) if e is None]
    with_types = bool(ok) and all(types is not None for types in ok)
    return Encoded(windows=[ids for ids, _ in per_row],
                   token_type_ids=[types or [] for _, types in per_row] if with_types else None,
                   errors=errors)


def _pair_windows(tokenizer, texts, hypotheses, max_length) -> list[tuple[list, list | None]]:
    """Per text: (its windows of token ids, its windows of token type ids or None)."""
    n = len(hypotheses)
    enc = tokenizer([text for text in texts for _ in range(n)], hypotheses * len(texts),
                    truncation="only_first", max_length=max_length)
    ids, types = enc["input_ids"], enc.get("token_type_ids")
    return [(ids[i * n:(i + 1) * n], None if types is None else types[i * n:(i + 1) * n])
            for i in range(len(texts))]


def _windows_output(windows: list[dict], name: str, expected: int) -> np.ndarray:
    """(windows, ...) of one row's raw output `name`; refuses outputs of the other mode (the
    mode tokenize resolved differs from the one inference resolved)."""
    if len(windows) != expected or any(name not in w for w in windows):
        raise RuntimeError(
            f"zero-shot-classification: a row came back with {len(windows)} window(s) of "
            f"{sorted(windows[0]) if windows else []}, expected {expected} of {name!r}; the "
            f"mode resolved while tokenizing differs from the model's. Set options.mode "
            f"explicitly (nli or embedding-similarity).")
    return np.stack([w[name] for w in windows])


def tokenizer_mode(tokenizer, options: ZeroShotOptions) -> str:
    """The mode while tokenizing, where the contract gives no model config: `auto` is
    resolved from the config.json beside the tokenizer (the model folder)."""
    if options.mode != "auto":
        return options.mode
    architectures, label2id = _folder_heads(getattr(tokenizer, "name_or_path", "") or "")
    return resolve_mode("auto", architectures, label2id)


@functools.lru_cache(maxsize=8)
def _folder_heads(name_or_path: str) -> tuple[list | None, dict | None]:
    """(architectures, label2id) from the model's config.json (a folder or a cached hub id)."""
    from transformers.utils import cached_file

    path = cached_file(name_or_path, "config.json", _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False) if name_or_path else None
    if path is None:
        raise ValueError(f"zero-shot-classification mode auto: no config.json found for "
                         f"{name_or_path!r} to tell an NLI classifier from an encoder; set "
                         f"options.mode to nli or embedding-similarity")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    return config.get("architectures"), config.get("label2id")


def _embed(encoder, tensors, mode):
    import torch.nn.functional as F

    hidden = encoder(**tensors).last_hidden_state  # (batch, seq, hidden)
    return F.normalize(pool(hidden, tensors["attention_mask"], mode).float(), p=2, dim=-1)


register(ZeroShotClassification())
