"""Training token-classification (NER): a tag per token from a token-classification head.

Gold, either of:
  tokens  list<string>  the row's words          + tags      list<string>  one BIO tag per word
  text    string                                 + entities  list<struct<start, end, label>>
          character spans into the text (`label` may be named `entity`, as corpusmill's own
          token-classification output names it, so corrected outputs train directly)
Labels:  `options.labels` in that id order, else `O` then the found tags by entity type (`B-`
         before `I-`); spans give `B-X` / `I-X` for each type X.
Alignment, the standard way: a word's first sub-token carries its tag, its other sub-tokens
and the special tokens get -100 (ignored by the loss). With spans, the words are the
tokenizer's own (its pre-tokenizer): a word is tagged with the span it overlaps, `B-` when it
holds the span's start, else `I-`. A row longer than `max_length` tokens is split into windows
overlapping by `stride` tokens, as inference splits it; a word is labelled in the first window
that holds its first sub-token only, so each word counts once.
Metric: entity-level F1 over the validation rows' words (seqeval, as conlleval)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from corpusmill.pipelines.base import TaskOptions
from corpusmill.pipelines.training.base import (
    IGNORE, LENGTH, EvalData, Examples, TrainingDataError, TrainingTask,
)
from corpusmill.pipelines.token_classification import window_stride
from corpusmill.pipelines.training.scores import tagging_scores

OUTSIDE = "O"
SPAN_LABEL_NAMES = ("label", "entity")


class TokenClassificationTrainingOptions(TaskOptions):
    labels: list[str] | None = Field(None, description="The tag set in id order (e.g. [O, "
                                     "B-PER, I-PER]); default: O and the tags found, by type.")
    stride: int | None = Field(None, ge=0, description="Tokens shared by consecutive windows "
                               "of a row longer than max_length; default a quarter of a "
                               "window, as inference.")

    @field_validator("labels")
    @classmethod
    def _distinct(cls, value):
        if value is not None and (len(set(value)) != len(value) or len(value) < 2):
            raise ValueError(f"`labels` must be at least 2 distinct tags, got {value}")
        return value


def tag_order(tag: str) -> tuple:
    """O first, then by entity type, B- before I- (other schemes: by the tag itself)."""
    if tag == OUTSIDE:
        return (0, "", "")
    prefix, _, kind = tag.partition("-")
    return (1, kind, prefix) if kind else (1, tag, "")


def _is_list_of(arrow_type, check) -> bool:
    return ((pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))
            and check(arrow_type.value_type))


def _is_str(arrow_type) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


class TokenClassificationTraining(TrainingTask):
    name = "token-classification"
    summary = "a token-classification (NER) head: BIO tags per word, or character spans"
    field_sets = (("tokens", "tags"), ("text", "entities"))
    Options = TokenClassificationTrainingOptions
    metric = "f1"

    def __init__(self):
        self.spans = False           # gold as character spans (set by check_types)
        self.span_label = "label"    # the struct field naming a span's type

    @property
    def label_field(self):
        return "entities" if self.spans else "tags"

    def check_types(self, types):
        if "entities" in types:
            entities = types["entities"]
            struct = entities.value_type if _is_list_of(entities, pa.types.is_struct) else None
            names = [struct.field(i).name for i in range(struct.num_fields)] if struct else []
            label = next((n for n in SPAN_LABEL_NAMES if n in names), None)
            if struct is None or "start" not in names or "end" not in names or label is None:
                raise ValueError(f"entities must be a list of structs with start, end (character "
                                 f"offsets into text) and label; the column is {entities}")
            self.spans, self.span_label = True, label
            return
        if not _is_list_of(types["tokens"], _is_str):
            raise ValueError(f"tokens must be a list of strings (the row's words); the column "
                             f"is {types['tokens']}")
        if not _is_list_of(types["tags"], _is_str):
            raise ValueError(f"tags must be a list of strings (one BIO tag per word); the "
                             f"column is {types['tags']}")

    def label_values(self, column):
        values = pc.list_flatten(column)
        if self.spans:
            kinds = pc.unique(pc.struct_field(values, self.span_label).drop_null()).to_pylist()
            return {OUTSIDE} | {f"{p}-{k}" for k in kinds for p in "BI"}
        return {OUTSIDE} | set(pc.unique(values.drop_null()).to_pylist())

    def label_list(self, found, options):
        if options.labels is None:
            return sorted(found, key=tag_order)
        unknown = sorted(found - set(options.labels) - {OUTSIDE})
        if unknown:
            raise ValueError(f"the rows hold tag(s) not in options.labels: "
                             f"{', '.join(map(repr, unknown[:10]))}; add them or fix the rows")
        return list(options.labels)

    def model_class(self):
        from transformers import AutoModelForTokenClassification
        return AutoModelForTokenClassification

    def model_kwargs(self, labels, options, config):
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}

    def label_feature_types(self, labels):
        return {"labels": pa.list_(pa.int32())}

    def encode(self, tokenizer, rows, labels, options, config, max_length):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("token-classification training needs a fast tokenizer "
                             "(tokenizer.json) to align tags with sub-tokens")
        stride = window_stride(options.stride, max_length, tokenizer.num_special_tokens_to_add())
        tag_ids = {tag: i for i, tag in enumerate(labels)}
        if self.spans:
            enc = tokenizer(rows["text"], truncation=True, max_length=max_length, stride=stride,
                            return_overflowing_tokens=True, return_offsets_mapping=True)
            word_tags = [self._span_tags(i, text, entities, enc, tag_ids)
                         for i, (text, entities) in enumerate(zip(rows["text"], rows["entities"]))]
        else:
            for i, (words, tags) in enumerate(zip(rows["tokens"], rows["tags"])):
                if len(words) != len(tags):
                    raise TrainingDataError(i, f"{len(words)} tokens but {len(tags)} tags; give "
                                               f"one tag per token")
            enc = tokenizer(rows["tokens"], is_split_into_words=True, truncation=True,
                            max_length=max_length, stride=stride,
                            return_overflowing_tokens=True)
            word_tags = [{w: tag for w, tag in enumerate(tags)} for tags in rows["tags"]]
        owners = enc["overflow_to_sample_mapping"]
        labelled: dict[int, set] = {}
        columns = {name: enc[name] for name in ("input_ids", "token_type_ids") if name in enc}
        columns["labels"] = []
        for w, row in enumerate(owners):
            seen = labelled.setdefault(row, set())
            window_labels = []
            for word in enc.word_ids(w):
                if word is None or word in seen or word not in word_tags[row]:
                    window_labels.append(IGNORE)
                    continue
                tag = word_tags[row][word]
                if tag not in tag_ids:
                    raise TrainingDataError(row, f"tag {tag!r} is not in the label set "
                                                 f"({', '.join(labels)})")
                window_labels.append(tag_ids[tag])
                seen.add(word)
            columns["labels"].append(window_labels)
        columns[LENGTH] = [len(ids) for ids in enc["input_ids"]]
        return Examples(columns, rows=list(owners))

    def _span_tags(self, row, text, entities, enc, tag_ids) -> dict[int, str]:
        """Word index -> tag for one row of the text + entities form."""
        spans = []
        for entity in entities:
            start, end, kind = entity["start"], entity["end"], entity[self.span_label]
            if start is None or end is None or kind is None or not 0 <= start < end <= len(text):
                raise TrainingDataError(row, f"entity {entity} is not a span of the text "
                                             f"(0 <= start < end <= {len(text)}, label set)")
            spans.append((start, end, kind))
        words: dict[int, list[int]] = {}  # word -> [start, end] characters
        for w in (w for w, owner in enumerate(enc["overflow_to_sample_mapping"]) if owner == row):
            for word, (s, e) in zip(enc.word_ids(w), enc["offset_mapping"][w]):
                if word is not None:
                    span = words.setdefault(word, [s, e])
                    span[0], span[1] = min(span[0], s), max(span[1], e)
        tags = {}
        for word, (ws, we) in words.items():
            tags[word] = OUTSIDE
            for start, end, kind in spans:  # the first span a word overlaps wins
                if ws < end and we > start:
                    tags[word] = f"{'B' if ws <= start else 'I'}-{kind}"
                    break
        return tags

    def collators(self, tokenizer, model, options, seed):
        from transformers import DataCollatorForTokenClassification

        collator = DataCollatorForTokenClassification(tokenizer)
        return collator, collator

    def metrics(self, predictions, label_ids, data: EvalData, options):
        predicted_ids = np.asarray(predictions).argmax(-1)  # (examples, seq)
        label_ids = np.asarray(label_ids)
        names = data.labels
        gold: dict[int, list[str]] = {}
        predicted: dict[int, list[str]] = {}
        rows = data.examples.column("row").to_numpy()
        for example, row in enumerate(rows):
            keep = label_ids[example] != IGNORE
            gold.setdefault(int(row), []).extend(names[i] for i in label_ids[example][keep])
            predicted.setdefault(int(row), []).extend(
                names[i] for i in predicted_ids[example][keep])
        order = sorted(gold)
        return tagging_scores([gold[r] for r in order], [predicted[r] for r in order])

