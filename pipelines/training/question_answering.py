"""Training extractive question-answering (SQuAD-style): start and end logits per token.

Fields:  question, context  string
         answer_text        string: the answer as it appears in the context; "" for a question
                            the context does not answer (SQuAD 2.0; trained to point at CLS)
         answer_start       integer: character offset of the answer in the context
Windows: each question is paired with overlapping slices of its context exactly as inference
pairs them (`pipelines/question_answering.encode_windows`: `max_seq_len` tokens per window,
`doc_stride` tokens of overlap); a window holding the whole answer is labelled with the
answer's first and last token, any other window with the CLS token, as transformers' run_qa
example does.
Metric: SQuAD F1 (and exact match) of the answers decoded from the validation windows as
`corpusmill run` decodes them (same window and answer options) against `answer_text`."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from corpusmill.pipelines.question_answering import (
    QuestionAnsweringOptions, QuestionWindowOptions, encode_windows,
)
from corpusmill.pipelines.spans import Window, best_answers
from corpusmill.pipelines.training.base import (
    LENGTH, EvalData, Examples, TrainingDataError, TrainingTask,
)
from corpusmill.pipelines.training.scores import answer_scores

EVAL_BATCH = 256  # validation rows re-windowed at a time for decoding


class QuestionAnsweringTrainingOptions(QuestionWindowOptions):
    """Windows as inference makes them; answers decoded for the validation metric as
    inference decodes them."""


def inference_options(options: QuestionAnsweringTrainingOptions) -> QuestionAnsweringOptions:
    return QuestionAnsweringOptions(**options.model_dump())


def answer_positions(window: Window, ids: list[int], context_sequence: int, start_char: int,
                     end_char: int, cls_id: int | None) -> tuple[int, int]:
    """(start token, end token) of the answer [start_char, end_char) in one window, or the CLS
    token's position twice when the window does not hold the whole answer."""
    cls = ids.index(cls_id) if cls_id is not None and cls_id in ids else 0
    context = np.flatnonzero(window.sequence_ids == context_sequence)
    if start_char == end_char or not len(context):
        return cls, cls
    first, last = int(context[0]), int(context[-1])
    offsets = window.offsets
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls, cls
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def check_answer(row: int, context: str, text: str, start: int) -> None:
    """Refuse an answer that is not where answer_start says, naming where it does occur."""
    if text == "":
        return
    if start < 0 or context[start:start + len(text)] != text:
        found = [i for i in range(len(context)) if context.startswith(text, i)][:5]
        where = (f"it occurs at {', '.join(map(str, found))}" if found
                 else "it does not occur in the context")
        raise TrainingDataError(row, f"answer_text {text!r} is not at answer_start {start} of "
                                     f"the context ({context[max(start, 0):][:len(text)]!r} is "
                                     f"there; {where}); answer_start is the 0-based character "
                                     f"offset of the answer in the context")


class QuestionAnsweringTraining(TrainingTask):
    name = "question-answering"
    summary = "an extractive QA head (start/end per token) from SQuAD-style answers"
    field_sets = (("question", "context", "answer_text", "answer_start"),)
    Options = QuestionAnsweringTrainingOptions
    metric = "f1"

    def check_types(self, types):
        for name in ("question", "context", "answer_text"):
            if not (pa.types.is_string(types[name]) or pa.types.is_large_string(types[name])):
                raise ValueError(f"{name} must be a string column; it is {types[name]}")
        if not pa.types.is_integer(types["answer_start"]):
            raise ValueError(f"answer_start must be an integer column (character offset); it "
                             f"is {types['answer_start']}")

    def model_class(self):
        from transformers import AutoModelForQuestionAnswering
        return AutoModelForQuestionAnswering

    def label_feature_types(self, labels):
        return {"start_positions": pa.int64(), "end_positions": pa.int64()}

    def encode(self, tokenizer, rows, labels, options, config, max_length):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("question-answering training needs a fast tokenizer "
                             "(tokenizer.json) for character offsets")
        enc = encode_windows(tokenizer, rows["question"], rows["context"],
                             inference_options(options), max_length)
        columns: dict[str, list] = {"input_ids": [], "token_type_ids": [],
                                    "start_positions": [], "end_positions": [], LENGTH: []}
        owners = []
        for i, (context, text, start) in enumerate(zip(rows["context"], rows["answer_text"],
                                                       rows["answer_start"])):
            if enc.errors[i] is not None:
                raise TrainingDataError(i, enc.errors[i])
            check_answer(i, context, text, start)
            extras = enc.extras[i]
            for ids, types, window in zip(enc.windows[i], enc.token_type_ids[i],
                                          extras["windows"]):
                s, e = answer_positions(window, ids, extras["context_sequence"], start,
                                        start + len(text), tokenizer.cls_token_id)
                columns["input_ids"].append(ids)
                columns["token_type_ids"].append(types)
                columns["start_positions"].append(s)
                columns["end_positions"].append(e)
                columns[LENGTH].append(len(ids))
                owners.append(i)
        return Examples(columns, rows=owners)

    def collators(self, tokenizer, model, options, seed):
        from transformers import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tokenizer)
        return collator, collator

    def metrics(self, predictions, label_ids, data: EvalData, options):
        start_logits, end_logits = (np.asarray(p) for p in predictions)  # (examples, seq)
        qa_options = inference_options(options)
        rows = data.rows
        predicted, gold = [], []
        example = 0
        for offset in range(0, rows.num_rows, EVAL_BATCH):
            batch = rows.slice(offset, EVAL_BATCH).to_pydict()
            enc = encode_windows(data.tokenizer, batch["question"], batch["context"],
                                 qa_options, data.extra["max_length"])
            for i, context in enumerate(batch["context"]):
                windows = enc.extras[i]["windows"]
                lengths = [len(w.offsets) for w in windows]
                starts = [start_logits[example + k][:n] for k, n in enumerate(lengths)]
                ends = [end_logits[example + k][:n] for k, n in enumerate(lengths)]
                example += len(windows)
                answers = best_answers(
                    context, windows, starts, ends,
                    context_sequence=enc.extras[i]["context_sequence"], top_k=1,
                    max_answer_len=qa_options.max_answer_len,
                    handle_impossible_answer=qa_options.handle_impossible_answer,
                    align_to_words=qa_options.align_to_words)
                predicted.append(answers[0]["answer"] if answers else "")
                gold.append([batch["answer_text"][i]])
        return answer_scores(predicted, gold)
