"""question-answering: extract the span of `context` that answers `question`, with a model that
has an extractive question-answering head (`*ForQuestionAnswering`: start/end logits per token).

Input columns:  question (string), context (string); map corpus columns with
                `columns: {question: <column>, context: <column>}`
Output columns: answer   string   the best answer, `context[start:end]`
                score    float32  its score (span probability, summed over identical answers)
                start    int32    character offset of the answer in `context`
                end      int32    character offset just past the answer
                answers  list<struct<answer: string, score: float32, start: int32, end: int32>>
                         the `top_k` best, best first (always present, one entry at the default
                         top_k=1, so the schema never changes with options)

Contexts of any length: the question is paired with overlapping slices of the context
(`max_seq_len` tokens per window, `doc_stride` tokens of overlap), every window is scored, and
all windows of a row are decoded together. Semantics and answers follow transformers 4.x's
question-answering pipeline (removed in transformers 5; the decoding lives in
`pipelines/spans.py`). Longformer models get global attention on the question tokens, as
`LongformerForQuestionAnswering` gives itself by default. Empty questions or contexts, and rows
whose question leaves no room for the context in a window, are row errors.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from corpusmill.pipelines.base import (
    Encoded, EvaluateOptions, ModelMismatch, Panel, Task, TaskOptions,
)
from corpusmill.pipelines.metrics import squad_metrics
from corpusmill.pipelines.outcomes import as_references, require_string_gold
from corpusmill.pipelines.registry import register
from corpusmill.pipelines.spans import NO_WORD, Window, best_answers

ANSWER = pa.struct([pa.field("answer", pa.string()), pa.field("score", pa.float32()),
                    pa.field("start", pa.int32()), pa.field("end", pa.int32())])


class QuestionWindowOptions(TaskOptions):
    """How a question and its context become windows, and how answers are read back from
    them: shared by inference and training (`pipelines/training/question_answering.py`)."""

    doc_stride: int | None = Field(
        None, ge=0, description="Tokens of overlap between consecutive windows of a long "
                                "context; default: min(max_seq_len // 2, 128), as transformers.")
    max_answer_len: int = Field(15, ge=1, description="Longest answer considered, in tokens.")
    max_seq_len: int = Field(384, ge=8, description="Tokens per window (question + context "
                                                     "slice + special tokens); capped by the model.")
    max_question_len: int = Field(64, ge=1, description="Questions are cut to this many tokens.")
    handle_impossible_answer: bool = Field(
        False, description="Let the empty answer (score from the CLS token) compete, for "
                           "models trained on unanswerable questions (SQuAD 2.0).")
    align_to_words: bool = Field(True, description="Widen answers to whole words (better for "
                                                    "space-separated languages).")

    @model_validator(mode="after")
    def _stride_fits(self):
        if self.doc_stride is not None and self.doc_stride >= self.max_seq_len:
            raise ValueError(f"`doc_stride` must be smaller than `max_seq_len` "
                             f"({self.max_seq_len}), got {self.doc_stride}")
        return self


class QuestionAnsweringOptions(QuestionWindowOptions):
    top_k: int = Field(1, ge=1, description="How many answers go into `answers`, best first; "
                                             "`answer`, `score`, `start`, `end` hold the best.")


def window_limits(options: QuestionAnsweringOptions, max_length: int) -> tuple[int, int]:
    """(tokens per window, overlap): `max_seq_len` capped by the model, and transformers'
    default stride min(max_seq_len // 2, 128) unless `doc_stride` is set."""
    max_seq_len = min(options.max_seq_len, max_length)
    stride = options.doc_stride if options.doc_stride is not None else min(max_seq_len // 2, 128)
    return max_seq_len, stride


class QuestionAnswering(Task):
    name = "question-answering"
    summary = ("Extract the answer to a question from its context (any length) with an "
               "extractive QA model (*ForQuestionAnswering).")
    input_columns = ("question", "context")
    Options = QuestionAnsweringOptions
    token_outputs = frozenset({"start_logits", "end_logits"})
    typed_outputs = True

    def output_fields(self):
        return [pa.field("answer", pa.string()), pa.field("score", pa.float32()),
                pa.field("start", pa.int32()), pa.field("end", pa.int32()),
                pa.field("answers", pa.list_(ANSWER))]

    def check_model(self, config, options):
        architectures = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForQuestionAnswering") for a in architectures):
            found = ", ".join(architectures) or f"a bare {config.model_type} model"
            raise ModelMismatch(
                f"question-answering needs a checkpoint with an extractive question-answering "
                f"head (config.architectures ending in 'ForQuestionAnswering', e.g. "
                f"BertForQuestionAnswering, LongformerForQuestionAnswering); this one is "
                f"{found}. Use a model fine-tuned on SQuAD, e.g. "
                f"distilbert/distilbert-base-cased-distilled-squad, deepset/roberta-base-squad2 "
                f"(answers 'no answer' with handle_impossible_answer: true) or "
                f"allenai/longformer-large-4096-finetuned-triviaqa for long contexts.")

    def model_class(self):
        from transformers import AutoModelForQuestionAnswering
        return AutoModelForQuestionAnswering

    def encode(self, tokenizer, texts, options, max_length):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("question-answering needs a fast (Rust `tokenizers`) tokenizer for "
                             "character offsets; this model folder has only a slow one. Save "
                             "a tokenizer.json with the model (AutoTokenizer.from_pretrained("
                             "..., use_fast=True).save_pretrained(folder)).")
        return encode_windows(tokenizer, texts["question"], texts["context"], options, max_length)

    def prepare(self, model, tokenizer, options, model_ref, revision):
        state = {"token_type_ids": wants_token_types(model)}
        # LongformerForQuestionAnswering computes this mask itself when none is given; building
        # it here gives the same mask without its "exactly three separators" assertion
        if getattr(model.config, "model_type", None) == "longformer":
            state["global_attention_sep_id"] = int(model.config.sep_token_id)
        return state

    def graph_forward(self, model, tensors, state, options):
        if not state["token_type_ids"]:
            tensors = {k: v for k, v in tensors.items() if k != "token_type_ids"}
        sep_id = state.get("global_attention_sep_id")
        if sep_id is not None:
            tensors = {**tensors, "global_attention_mask":
                       question_global_attention(tensors["input_ids"], sep_id)}
        out = model(**tensors)
        return {"start_logits": out.start_logits,  # (batch, seq)
                "end_logits": out.end_logits}      # (batch, seq)

    def decode(self, rows, options, config, tokenizer):
        columns = {name: [] for name in ("answer", "score", "start", "end", "answers")}
        for outputs, context, extras in zip(rows.outputs, rows.texts["context"], rows.extras):
            answers = best_answers(
                context, extras["windows"], [w["start_logits"] for w in outputs],
                [w["end_logits"] for w in outputs], context_sequence=extras["context_sequence"],
                top_k=options.top_k, max_answer_len=options.max_answer_len,
                handle_impossible_answer=options.handle_impossible_answer,
                align_to_words=options.align_to_words)
            best = answers[0] if answers else {"answer": None, "score": None, "start": None,
                                               "end": None}
            for name in ("answer", "score", "start", "end"):
                columns[name].append(best[name])
            columns["answers"].append(answers)
        return columns

    Evaluate = EvaluateOptions  # gold: the answer text, or a list of acceptable answers

    def report_facts(self, outputs):
        answers = ["" if a is None else a for a in outputs.column("answer").to_pylist()]
        return {"score": outputs.column("score").to_pylist(),
                "empty": [not a.strip() for a in answers],
                "answer_words": [len(a.split()) for a in answers]}

    def report_panels(self, options):
        return [Panel("histogram", "score", "Answer score", range=(0.0, 1.0)),
                Panel("share", "empty", "Empty answers"),
                Panel("histogram", "answer_words", "Answer length (words)")]

    def check_gold(self, gold, evaluate, options):
        require_string_gold(gold, self.name, lists=True)

    def evaluate(self, rows, evaluate, options):
        """SQuAD v1.1 exact match and F1 (official normalisation), each question against its
        best gold answer; no answer counts as the empty answer."""
        predictions = ["" if a is None else a for a in rows.outputs["answer"]]
        return squad_metrics(predictions, [as_references(g) for g in rows.gold])


def wants_token_types(model) -> bool:
    """Whether the model uses segment ids (BERT, ALBERT, ELECTRA: a question/context embedding);
    RoBERTa-style models (one segment) and models without the input get none, as the
    pipeline's tokenizers (`model_input_names`) give them."""
    import inspect

    return ("token_type_ids" in inspect.signature(model.forward).parameters
            and getattr(model.config, "type_vocab_size", 0) > 1)


def question_global_attention(input_ids, sep_token_id: int):
    """(batch, seq) bool: True on the tokens before each window's first separator (CLS and the
    question), what Longformer's `_compute_global_attention_mask` gives."""
    import torch

    is_sep = input_ids == sep_token_id
    first_sep = torch.where(is_sep.any(dim=1), is_sep.int().argmax(dim=1),
                            torch.zeros_like(input_ids[:, 0]))
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return positions[None, :] < first_sep[:, None]


def encode_windows(tokenizer, questions: list[str], contexts: list[str],
                   options: QuestionAnsweringOptions, max_length: int) -> Encoded:
    """Each row's question paired with overlapping slices of its context, as transformers'
    pipeline tokenizes them (question first for right-padding tokenizers, `only_second`
    truncation with `doc_stride` overflow); extras keep per window what decoding needs."""
    max_seq_len, stride = window_limits(options, max_length)
    question_first = tokenizer.padding_side == "right"
    n = len(questions)
    errors: list[str | None] = [None] * n
    questions = cut_questions(tokenizer, questions, options.max_question_len)
    room = context_room(tokenizer, questions, max_seq_len)
    for i in range(n):
        if not questions[i]:
            errors[i] = "question is empty"
        elif not contexts[i]:
            errors[i] = "context is empty"
        elif room[i] <= stride and needs_windows(tokenizer, questions[i], contexts[i], max_seq_len):
            errors[i] = (f"the question takes {max_seq_len - room[i]} of the {max_seq_len} tokens "
                         f"of a window, leaving {max(room[i], 0)} for the context, which must be "
                         f"more than doc_stride={stride}; raise max_seq_len, or lower "
                         f"max_question_len or doc_stride")
    ok = [i for i in range(n) if errors[i] is None]
    windows: list = [[] for _ in range(n)]
    type_ids: list = [[] for _ in range(n)]
    extras: list = [None] * n
    for start in range(0, len(ok), 64):  # bounded tokenizer calls; a failure is isolated below
        chunk = ok[start:start + 64]
        try:
            _tokenize_rows(tokenizer, chunk, questions, contexts, question_first, max_seq_len,
                           stride, windows, type_ids, extras)
        except Exception:  # noqa: BLE001 - retry row by row to find the one at fault
            for i in chunk:
                try:
                    _tokenize_rows(tokenizer, [i], questions, contexts, question_first,
                                   max_seq_len, stride, windows, type_ids, extras)
                except Exception as e:  # noqa: BLE001
                    errors[i] = f"tokenization failed: {type(e).__name__}: {e}"
    # segment ids always travel; forward drops them for models that take none
    return Encoded(windows=windows, token_type_ids=type_ids, extras=extras, errors=errors)


def _tokenize_rows(tokenizer, rows, questions, contexts, question_first, max_seq_len, stride,
                   windows, type_ids, extras) -> None:
    qs, cs = [questions[i] for i in rows], [contexts[i] for i in rows]
    enc = tokenizer(
        text=qs if question_first else cs, text_pair=cs if question_first else qs,
        truncation="only_second" if question_first else "only_first", max_length=max_seq_len,
        stride=stride, return_token_type_ids=True, return_overflowing_tokens=True,
        return_offsets_mapping=True)
    cls_id = tokenizer.cls_token_id
    per_row: dict[int, list] = {i: [] for i in rows}
    for w, k in enumerate(enc["overflow_to_sample_mapping"]):
        ids = enc["input_ids"][w]
        sequence_ids = np.array([NO_WORD if s is None else s for s in enc.sequence_ids(w)],
                                dtype=np.int8)
        # 1 where a token cannot be in the answer: all but the context (transformers marks
        # nothing when the context comes first), except CLS tokens
        p_mask = (sequence_ids != 1) if question_first else np.zeros(len(ids), dtype=bool)
        if cls_id is not None:
            p_mask &= np.asarray(ids) != cls_id
        window = Window(
            p_mask=p_mask.astype(np.uint8),
            offsets=np.asarray(enc["offset_mapping"][w], dtype=np.int32).reshape(-1, 2),
            word_ids=np.array([NO_WORD if x is None else x for x in enc.word_ids(w)],
                              dtype=np.int32),
            sequence_ids=sequence_ids)
        per_row[rows[k]].append((ids, enc["token_type_ids"][w], window))
    for i, parts in per_row.items():
        windows[i] = [ids for ids, _, _ in parts]
        type_ids[i] = [t for _, t, _ in parts]
        extras[i] = {"context_sequence": 1 if question_first else 0,
                     "windows": [window for _, _, window in parts]}


def cut_questions(tokenizer, questions: list[str], max_question_len: int) -> list[str]:
    """Questions longer than `max_question_len` tokens cut after their last kept token."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    cut = []
    for question, offsets in zip(questions, enc["offset_mapping"]):
        cut.append(question[:offsets[max_question_len - 1][1]]
                   if len(offsets) > max_question_len else question)
    return cut


def context_room(tokenizer, questions: list[str], max_seq_len: int) -> list[int]:
    """Context tokens that fit in one window beside each question and the special tokens."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    return [max_seq_len - specials - length for length in lengths]


def needs_windows(tokenizer, question: str, context: str, max_seq_len: int) -> bool:
    """Whether question + context exceed one window (only then does the stride matter)."""
    return len(tokenizer(question, context)["input_ids"]) > max_seq_len


register(QuestionAnswering())
