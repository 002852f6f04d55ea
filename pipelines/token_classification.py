"""token-classification (NER): entities found by a token-classification head, with character
offsets into the input text.

Input columns:  text (string)
Output columns: entities list<struct<entity: string, score: float32, word: string,
                                     start: int32, end: int32>>
                         in text order; `text[start:end]` is the entity's span of the input
                         (`word` is the model's tokens joined back, so it may differ in case,
                         accents or spacing). `entity` is the token's label (`B-PER`) under
                         aggregation_strategy `none`, else the entity group (`PER`; what
                         transformers calls `entity_group`). Same schema for every strategy.
Semantics follow transformers' token-classification pipeline (`aggregation_strategy` none /
simple / first / average / max, `ignore_labels`), with one difference: a text longer than the
model's window is never truncated. It is split into windows that overlap by `stride` tokens
(default: a quarter of a window's text tokens), and the windows' entities are merged as the
transformers pipeline merges them when it is given `stride`: entities that overlap are one
entity, the longer one (on equal length, the higher score) wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from corpusmill.pipelines.base import (
    Encoded, EvaluateOptions, ModelMismatch, Panel, Task, TaskOptions, softmax,
)
from corpusmill.pipelines.metrics import bio_tags, entity_metrics, split_entity_label, words
from corpusmill.pipelines.outcomes import is_string_list
from corpusmill.pipelines.registry import register

ENTITY = pa.struct([pa.field("entity", pa.string()), pa.field("score", pa.float32()),
                    pa.field("word", pa.string()), pa.field("start", pa.int32()),
                    pa.field("end", pa.int32())])
Strategy = Literal["none", "simple", "first", "average", "max"]
WORD_STRATEGIES = ("first", "average", "max")


class TokenClassificationOptions(TaskOptions):
    aggregation_strategy: Strategy = Field(
        "none", description="How tokens become entities, as in transformers: `none` one entity "
                            "per token (its B-/I- label); `simple` adjacent tokens of one type "
                            "grouped; `first` / `average` / `max` words get one label (from their "
                            "first token, the averaged scores, the best-scoring token), then "
                            "grouped.")
    ignore_labels: list[str] = Field(
        ["O"], description="Labels (or entity groups) left out of `entities`.")
    stride: int | None = Field(
        None, ge=0, description="Tokens shared by consecutive windows of a text longer than the "
                                "model's window; default a quarter of a window's text tokens "
                                "(127 for a 512-token BERT). Entities up to this many tokens "
                                "long are never cut at a window boundary.")


class NerEvaluateOptions(EvaluateOptions):
    gold_format: Literal["bio", "spans"] = Field(
        "bio", description="`bio`: a list of BIO tags per row, one per whitespace-separated "
                           "word of the text; `spans`: a list of {start, end, label} character "
                           "spans per row.")


# ---------------------------------------------------------------- pure helpers (no model)

@dataclass
class PreEntity:
    """One non-special token of a window, before aggregation."""

    word: str            # the token (or, for the unknown token, the text it covers)
    scores: np.ndarray   # (num_labels,) softmax scores
    start: int           # character offsets into the text
    end: int
    is_subword: bool     # continues the previous token's word


@dataclass
class Entity:
    entity: str          # label (`none`) or entity group (other strategies)
    score: float
    word: str
    start: int
    end: int

    def as_row(self) -> dict:
        return {"entity": self.entity, "score": float(self.score), "word": self.word,
                "start": int(self.start), "end": int(self.end)}


def default_stride(max_length: int, num_special_tokens: int) -> int:
    """A quarter of a window's text tokens."""
    return max(0, (max_length - num_special_tokens) // 4)


def window_stride(stride: int | None, max_length: int, num_special_tokens: int) -> int:
    """The stride to tokenize with; refuses one that leaves windows no new tokens."""
    room = max_length - num_special_tokens
    default = default_stride(max_length, num_special_tokens)
    if stride is None:
        return default
    if stride >= room:
        raise ValueError(
            f"`stride` must be less than the {room} text tokens of a window (max_length "
            f"{max_length} minus {num_special_tokens} special tokens), got {stride}; lower "
            f"options.stride or leave it out for the default ({default})")
    return stride


def gather_pre_entities(text: str, tokens: list[str], is_unknown: np.ndarray, scores: np.ndarray,
                        offsets: np.ndarray, special: np.ndarray,
                        word_aware: bool) -> list[PreEntity]:
    """One `PreEntity` per non-special token of a window. `tokens` (seq,) token strings,
    `is_unknown` (seq,) bool, `scores` (seq, num_labels), `offsets` (seq, 2) character
    offsets, `special` (seq,) special-token mask. `word_aware`: the tokenizer marks word
    continuations (WordPiece `##`), so a token is a subword when its string is not the text it
    covers; otherwise a token is a subword when no space precedes it (transformers' heuristic)."""
    pre = []
    for idx in range(len(tokens)):
        if special[idx]:
            continue
        start, end = int(offsets[idx][0]), int(offsets[idx][1])
        word = tokens[idx]
        covered = text[start:end]
        if word_aware:
            is_subword = len(word) != len(covered)
        else:
            is_subword = start > 0 and " " not in text[start - 1:start + 1]
        if is_unknown[idx]:
            word, is_subword = covered, False
        pre.append(PreEntity(word, scores[idx], start, end, is_subword))
    return pre


def token_entities(pre: list[PreEntity], id2label: dict[int, str]) -> list[Entity]:
    """Strategies none and simple: each token takes its best label."""
    out = []
    for p in pre:
        best = int(p.scores.argmax())
        out.append(Entity(id2label[best], p.scores[best], p.word, p.start, p.end))
    return out


def aggregate_word(pre: list[PreEntity], strategy: str, id2label: dict[int, str],
                   join: Callable[[list[str]], str]) -> Entity:
    """One label for the tokens of one word: of its first token, of its best-scoring token,
    or the best of the averaged scores."""
    if strategy == "first":
        scores = pre[0].scores
    elif strategy == "max":
        scores = max(pre, key=lambda p: p.scores.max()).scores
    elif strategy == "average":
        scores = np.nanmean(np.stack([p.scores for p in pre]), axis=0)
    else:
        raise ValueError(f"aggregation_strategy {strategy!r} does not aggregate words")
    best = int(scores.argmax())
    return Entity(id2label[best], scores[best], join([p.word for p in pre]), pre[0].start,
                  pre[-1].end)


def word_entities(pre: list[PreEntity], strategy: str, id2label: dict[int, str],
                  join: Callable[[list[str]], str]) -> list[Entity]:
    """Strategies first / average / max: a word (a token and the subwords after it) gets one
    label. A window's first token starts a word even when it is a subword."""
    words: list[list[PreEntity]] = []
    for p in pre:
        if words and p.is_subword:
            words[-1].append(p)
        else:
            words.append([p])
    return [aggregate_word(w, strategy, id2label, join) for w in words]


def split_tag(label: str) -> tuple[str, str]:
    """("B" or "I", type); a label without a B-/I- prefix continues ("I") its own type."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_entities(entities: list[Entity], join: Callable[[list[str]], str]) -> list[Entity]:
    """Adjacent entities of one type become one group, unless the later one is a B- label.
    A group's score is the mean of its members' scores; its name is the first member's
    label after the first '-'."""
    groups: list[list[Entity]] = []
    for e in entities:
        if groups:
            bi, tag = split_tag(e.entity)
            _, last_tag = split_tag(groups[-1][-1].entity)
            if tag == last_tag and bi != "B":
                groups[-1].append(e)
                continue
        groups.append([e])
    return [Entity(g[0].entity.split("-", 1)[-1],
                   np.mean(np.nanmean([e.score for e in g])),
                   join([e.word for e in g]), g[0].start, g[-1].end) for g in groups]


def merge_overlapping(entities: list[Entity]) -> list[Entity]:
    """Entities of overlapping windows, merged: sorted by start (stable), an entity that starts
    inside the one kept before it replaces it when longer, or as long and better scored, and is
    dropped otherwise."""
    if not entities:
        return entities
    ordered = sorted(entities, key=lambda e: e.start)
    merged = []
    kept = ordered[0]
    for e in ordered:
        if kept.start <= e.start < kept.end:
            length, kept_length = e.end - e.start, kept.end - kept.start
            if length > kept_length or (length == kept_length and e.score > kept.score):
                kept = e
        else:
            merged.append(kept)
            kept = e
    merged.append(kept)
    return merged


def window_entities(pre: list[PreEntity], strategy: str, id2label: dict[int, str],
                    join: Callable[[list[str]], str], ignore_labels: list[str]) -> list[Entity]:
    """The entities of one window, `ignore_labels` left out."""
    if strategy in WORD_STRATEGIES:
        entities = word_entities(pre, strategy, id2label, join)
    else:
        entities = token_entities(pre, id2label)
    if strategy != "none":
        entities = group_entities(entities, join)
    return [e for e in entities if e.entity not in ignore_labels]


def is_word_aware(tokenizer: Any) -> bool:
    """Whether the tokenizer marks word continuations (as transformers decides it)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    return bool(backend and getattr(backend.model, "continuing_subword_prefix", None))


# ---------------------------------------------------------------- the task

@dataclass
class WindowTokens:
    """What decode needs of one window besides its logits (kept in the row's extras)."""

    ids: np.ndarray       # (seq,) int32 token ids
    offsets: np.ndarray   # (seq, 2) int32 character offsets into the text
    special: np.ndarray   # (seq,) bool, special tokens ([CLS], [SEP])


class TokenClassification(Task):
    name = "token-classification"
    summary = "Find named entities (or any token labels) with a token-classification model."
    input_columns = ("text",)
    Options = TokenClassificationOptions
    token_outputs = frozenset({"logits"})
    typed_outputs = True

    def output_fields(self):
        return [pa.field("entities", pa.list_(ENTITY))]

    def check_model(self, config, options):
        architectures = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForTokenClassification") for a in architectures):
            found = ", ".join(architectures) or f"a bare {config.model_type} model"
            raise ModelMismatch(
                f"token-classification needs a checkpoint with a token-classification head "
                f"(config.architectures ending in 'ForTokenClassification', e.g. "
                f"dslim/bert-base-NER); this one is {found}. Use a model fine-tuned for NER or "
                f"another token-labelling task; for one label per text use task "
                f"'text-classification' (a '...ForSequenceClassification' head) or "
                f"'zero-shot-classification' (any encoder).")
        positions = getattr(config, "max_position_embeddings", None)
        if options.stride is not None and positions and options.stride >= positions:
            raise ModelMismatch(
                f"options.stride={options.stride} but the model's window is {positions} tokens; "
                f"set stride below the window's text tokens, or leave it out for the default.")

    def model_class(self):
        from transformers import AutoModelForTokenClassification
        return AutoModelForTokenClassification

    def encode_key(self, tokenizer, options, max_length):
        if not getattr(tokenizer, "is_fast", False):
            return None
        stride = window_stride(options.stride, max_length,
                               tokenizer.num_special_tokens_to_add(pair=False))
        return f"text:token-windows:{max_length}:{stride}"

    def encode(self, tokenizer, texts, options, max_length):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("token-classification needs a fast (Rust `tokenizers`) tokenizer "
                             "for character offsets; this model folder has only a slow one. "
                             "Save a tokenizer.json with the model (AutoTokenizer.from_pretrained"
                             "(..., use_fast=True).save_pretrained(folder)).")
        stride = window_stride(options.stride, max_length,
                               tokenizer.num_special_tokens_to_add(pair=False))
        rows = texts["text"]
        enc = tokenizer(rows, truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        return_special_tokens_mask=True)
        windows: list[list[list[int]]] = [[] for _ in rows]
        type_ids = [[] for _ in rows] if "token_type_ids" in enc else None
        extras: list[list[WindowTokens]] = [[] for _ in rows]
        for w, row in enumerate(enc["overflow_to_sample_mapping"]):
            ids = enc["input_ids"][w]
            windows[row].append(ids)
            if type_ids is not None:
                type_ids[row].append(enc["token_type_ids"][w])
            extras[row].append(WindowTokens(
                ids=np.asarray(ids, dtype=np.int32),
                offsets=np.asarray(enc["offset_mapping"][w], dtype=np.int32).reshape(-1, 2),
                special=np.asarray(enc["special_tokens_mask"][w], dtype=bool)))
        return Encoded(windows=windows, token_type_ids=type_ids, extras=extras)

    def graph_forward(self, model, tensors, state, options):
        return {"logits": model(**tensors).logits}  # (batch, seq, num_labels)

    def decode(self, rows, options, config, tokenizer):
        id2label = {int(k): v for k, v in config.id2label.items()}
        join = tokenizer.convert_tokens_to_string
        word_aware = is_word_aware(tokenizer)
        unk = tokenizer.unk_token_id
        column = []
        for text, outputs, windows in zip(rows.texts["text"], rows.outputs, rows.extras):
            found: list[Entity] = []
            for out, win in zip(outputs, windows):
                scores = softmax(out["logits"].astype(np.float32))  # (seq, num_labels)
                tokens = tokenizer.convert_ids_to_tokens(win.ids.tolist())
                is_unknown = (win.ids == unk) if unk is not None else np.zeros(len(tokens), bool)
                pre = gather_pre_entities(text, tokens, is_unknown, scores, win.offsets,
                                          win.special, word_aware)
                found.extend(window_entities(pre, options.aggregation_strategy, id2label, join,
                                             options.ignore_labels))
            if len(windows) > 1:
                found = merge_overlapping(found)
            column.append([e.as_row() for e in found])
        return {"entities": column}

    Evaluate = NerEvaluateOptions
    evaluate_inputs = ("text",)

    def report_facts(self, outputs):
        types, scores, counts = [], [], []
        for entities in outputs.column("entities").to_pylist():
            types.append([split_entity_label(e["entity"])[0] for e in entities])
            scores.append([e["score"] for e in entities])
            counts.append(len(entities))
        return {"entity_type": types, "entity_score": scores, "entities": counts}

    def report_panels(self, options):
        return [Panel("counts", "entity_type", "Entities per 1,000 rows, by type", per_rows=1000),
                Panel("histogram", "entities", "Entities per row"),
                Panel("histogram", "entity_score", "Entity scores", range=(0.0, 1.0))]

    def check_gold(self, gold, evaluate, options):
        if evaluate.gold_format == "bio":
            if not is_string_list(gold):
                raise ValueError(f"gold_format bio needs a list of BIO tags per row (one per "
                                 f"whitespace-separated word of the text, e.g. ['B-PER', "
                                 f"'I-PER', 'O']); this gold column is {gold}. Character "
                                 f"spans take gold_format: spans")
            return
        item = gold.value_type if pa.types.is_list(gold) or pa.types.is_large_list(gold) else None
        names = ({item.field(i).name for i in range(item.num_fields)}
                 if item is not None and pa.types.is_struct(item) else set())
        if not {"start", "end", "label"} <= names:
            raise ValueError(f"gold_format spans needs a list of {{start, end, label}} structs "
                             f"per row (character offsets into the text, end exclusive); this "
                             f"gold column is {gold}")

    def evaluate(self, rows, evaluate, options):
        """Entity-level scores by seqeval over the texts' whitespace-separated words: predicted
        entities and gold spans become BIO tags per word. Rows whose BIO gold has another
        number of tags than the text has words are left out and counted."""
        gold_tags, predicted_tags, mismatched = [], [], []
        for row_id, text, gold, entities in zip(rows.ids or [None] * len(rows),
                                                rows.texts["text"], rows.gold,
                                                rows.outputs["entities"]):
            if evaluate.gold_format == "spans":
                tags = bio_tags(text, [(s["start"], s["end"], s["label"]) for s in gold])
            else:
                tags = list(gold)
                if len(tags) != len(words(text)):
                    mismatched.append(row_id)
                    continue
            gold_tags.append(tags)
            predicted_tags.append(bio_tags(text, [(e["start"], e["end"], e["entity"])
                                                  for e in entities]))
        return {**entity_metrics(gold_tags, predicted_tags),
                "rows_gold_mismatched": len(mismatched),
                "gold_mismatched_examples": mismatched[:5]}


register(TokenClassification())
