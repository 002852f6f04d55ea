"""fill-mask: the most likely tokens for each mask token of a text, from a masked-LM head.

Input columns:  text (string) with one or more of the model's mask tokens (`[MASK]` for BERT,
                `<mask>` for RoBERTa)
Output columns: predictions list<struct<score: float32, token: int32, token_str: string,
                                       sequence: string, mask: int32>>
                    for each mask in text order (`mask` 0, 1, ...), its `top_k` best tokens,
                    best first, concatenated: a text with 2 masks at top_k=5 gets 10 entries.
                    score = softmax probability at that mask; token / token_str = the token
                    id and its decoded string; sequence = the text with that one mask filled.

Semantics follow transformers' fill-mask pipeline (run with truncation): with several masks
each is predicted on its own (independent probabilities, not joint), and `sequence` fills only
that mask, keeps the other mask tokens and, as transformers does for several masks, keeps the
special tokens (`[CLS] ... [SEP]`). `targets` restricts the candidates: a target is looked up
in the vocabulary as written, else replaced by the first token it tokenizes to (transformers'
rule); top_k is capped at the number of distinct targets. A text without a mask token is a
row error.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from corpusmill.pipelines.base import (
    Encoded, EvaluateOptions, ModelMismatch, Panel, Task, TaskOptions,
)
from corpusmill.pipelines.metrics import fill_mask_metrics
from corpusmill.pipelines.outcomes import require_string_gold
from corpusmill.pipelines.registry import register

PREDICTION = pa.struct([
    pa.field("score", pa.float32()), pa.field("token", pa.int32()),
    pa.field("token_str", pa.string()), pa.field("sequence", pa.string()),
    pa.field("mask", pa.int32()),
])


class FillMaskOptions(TaskOptions):
    top_k: int = Field(5, ge=1, description="Predictions per mask, best first.")
    targets: list[str] | None = Field(
        None, min_length=1, description="Only score these words; one that is not a single "
                                        "token of the vocabulary counts as its first token.")

    @field_validator("targets")
    @classmethod
    def _targets_not_blank(cls, targets):
        if targets is not None and any(not t.strip() for t in targets):
            raise ValueError(f"targets must not contain blank words, got {targets}")
        return targets


class FillMaskEvaluateOptions(EvaluateOptions):
    k: int | None = Field(None, ge=1, description="Top-k accuracy counts a mask as right when "
                          "its gold word is among its k best predictions; default: all the "
                          "predictions written (options.top_k).")


def target_ids(tokenizer, targets: list[str]) -> list[int]:
    """Token ids of the targets as transformers' pipeline finds them: the vocabulary entry
    spelled exactly so, else the first token of the word's tokenization (words that tokenize
    to nothing are left out); distinct, in first-seen order."""
    vocab = tokenizer.get_vocab()
    ids: dict[int, None] = {}
    for target in targets:
        token_id = vocab.get(target)
        if token_id is None:
            pieces = tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                               return_token_type_ids=False, max_length=1,
                               truncation=True)["input_ids"]
            if not pieces:
                continue
            token_id = pieces[0]
        ids[int(token_id)] = None
    return list(ids)


def no_mask_error(tokenizer, text: str, max_length: int) -> str:
    """Why a text whose first `max_length` tokens hold no mask token cannot be filled."""
    mask = tokenizer.mask_token
    full = tokenizer(text, truncation=False)["input_ids"]
    if tokenizer.mask_token_id in full:
        return (f"the {mask} token lies beyond the first {max_length} tokens, which is all the "
                f"model reads; move it earlier or shorten the text")
    return f"no {mask} token in the text; this model's mask token is {mask!r}"


class FillMask(Task):
    name = "fill-mask"
    summary = "Predict the tokens hidden behind each mask token with a masked-LM head."
    input_columns = ("text",)
    Options = FillMaskOptions
    graph_options = ("top_k", "targets")

    def output_fields(self):
        return [pa.field("predictions", pa.list_(PREDICTION))]

    def check_model(self, config, options):
        from transformers import AutoModelForMaskedLM

        architectures = getattr(config, "architectures", None) or []
        if (not any(a.endswith("ForMaskedLM") for a in architectures)
                or type(config) not in AutoModelForMaskedLM._model_mapping):
            found = ", ".join(architectures) or f"a bare {config.model_type} model"
            raise ModelMismatch(
                f"fill-mask needs a checkpoint with a masked-language-model head "
                f"(config.architectures ending in 'ForMaskedLM', e.g. BertForMaskedLM); this one "
                f"is {found}. Use an MLM checkpoint such as google-bert/bert-base-uncased.")
        if options.top_k > config.vocab_size:
            raise ModelMismatch(f"options.top_k={options.top_k} but the vocabulary has "
                                f"{config.vocab_size} tokens; set a smaller top_k.")

    def model_class(self):
        from transformers import AutoModelForMaskedLM
        return AutoModelForMaskedLM

    def prepare(self, model, tokenizer, options, model_ref, revision):
        import torch

        candidates = None
        if options.targets:
            candidates = torch.tensor(target_ids(tokenizer, options.targets), dtype=torch.long,
                                      device=model.device)
        return {"mask_id": tokenizer.mask_token_id, "candidates": candidates}

    def encode(self, tokenizer, texts, options, max_length):
        batch = texts["text"]
        if tokenizer.mask_token_id is None:
            why = ("this model's tokenizer has no mask token; fill-mask needs the tokenizer of "
                   "a masked-language model")
            return Encoded.single([[] for _ in batch], errors=[why] * len(batch))
        if options.targets and not target_ids(tokenizer, options.targets):
            why = f"none of the targets {options.targets} is a token of this model's vocabulary"
            return Encoded.single([[] for _ in batch], errors=[why] * len(batch))
        enc = tokenizer(batch, truncation=True, max_length=max_length)
        errors, extras = [], []
        for text, ids in zip(batch, enc["input_ids"]):
            has_mask = tokenizer.mask_token_id in ids
            errors.append(None if has_mask else no_mask_error(tokenizer, text, max_length))
            extras.append(list(ids) if has_mask else None)  # decode builds `sequence` from them
        return Encoded.single(enc["input_ids"], enc.get("token_type_ids"), extras=extras,
                              errors=errors)

    def graph_forward(self, model, tensors, state, options):
        import torch

        logits = model(**tensors).logits.float()  # (batch, seq, vocab)
        # the k best tokens at every position (the masks are picked out in `finish`, where
        # their number may vary): probabilities exp(logit - logsumexp), the softmax over the
        # whole vocabulary, as the pipeline computes, without a (batch, seq, vocab) softmax
        normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)  # (batch, seq, 1)
        candidates = state["candidates"]
        pool = logits if candidates is None else logits[..., candidates]
        best, index = pool.topk(min(options.top_k, pool.shape[-1]), dim=-1)  # (batch, seq, k)
        is_mask = (tensors["input_ids"] == state["mask_id"]) & tensors["attention_mask"].bool()
        return {"scores": (best - normaliser).exp(),                          # (batch, seq, k)
                "tokens": index if candidates is None else candidates[index],  # (batch, seq, k)
                "is_mask": is_mask}                                            # (batch, seq)

    def finish(self, outputs, options):
        return masks_in_slots(outputs["scores"], outputs["tokens"], outputs["is_mask"])

    def decode(self, rows, options, config, tokenizer):
        token_str: dict[int, str] = {}
        predictions = []
        for windows, input_ids in zip(rows.outputs, rows.extras):
            scores, tokens = windows[0]["scores"], windows[0]["tokens"]
            predictions.append(row_predictions(tokenizer, np.asarray(input_ids), scores,
                                               tokens, token_str))
        return {"predictions": predictions}

    Evaluate = FillMaskEvaluateOptions

    def report_facts(self, outputs):
        best_tokens, best_scores = [], []
        for predictions in outputs.column("predictions").to_pylist():
            firsts = first_per_mask(predictions)
            best_tokens.append([p["token_str"].strip() for p in firsts])
            best_scores.append([p["score"] for p in firsts])
        return {"best_token": best_tokens, "best_score": best_scores}

    def report_panels(self, options):
        return [Panel("counts", "best_token", "Best token at each mask (most frequent)"),
                Panel("histogram", "best_score", "Score of the best token", range=(0.0, 1.0))]

    def check_gold(self, gold, evaluate, options):
        require_string_gold(gold, self.name, lists=True)
        top_k = options.top_k if options.targets is None else min(options.top_k,
                                                                    len(options.targets))
        if evaluate.k is not None and evaluate.k > top_k:
            raise ValueError(f"evaluate.k={evaluate.k} but the job writes {top_k} prediction(s) "
                             f"per mask; set k at most {top_k}, or raise options.top_k")

    def evaluate(self, rows, evaluate, options):
        """Top-1 / top-k accuracy per mask: gold is the expected word (one mask) or a list of
        them, one per mask in text order. Rows whose gold count differs from their mask count
        are left out and counted."""
        ranked, expected, mismatched = [], [], []
        for row_id, gold, predictions in zip(rows.ids or [None] * len(rows), rows.gold,
                                             rows.outputs["predictions"]):
            per_mask: dict[int, list[str]] = {}
            for p in predictions:
                per_mask.setdefault(p["mask"], []).append(p["token_str"])
            golds = [gold] if isinstance(gold, str) else list(gold)
            if len(golds) != len(per_mask):
                mismatched.append(row_id)
                continue
            ranked += [per_mask[m] for m in sorted(per_mask)]
            expected += golds
        k = evaluate.k or options.top_k
        return {**fill_mask_metrics(ranked, expected, k),
                "rows_gold_mismatched": len(mismatched),
                "gold_mismatched_examples": mismatched[:5]}


def first_per_mask(predictions: list[dict]) -> list[dict]:
    """Each mask's best prediction (predictions are grouped by mask, best first)."""
    seen, firsts = set(), []
    for p in predictions:
        if p["mask"] not in seen:
            seen.add(p["mask"])
            firsts.append(p)
    return firsts


def masks_in_slots(scores: np.ndarray, tokens: np.ndarray,
                   is_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per-position predictions (batch, seq, k) -> each row's masks in text order, (batch,
    max masks, k): a row's n-th mask goes to slot n; rows with fewer masks keep padding
    (nan scores, -1 tokens)."""
    rows, cols = np.nonzero(is_mask)  # (masks,), (masks,) in text order
    slot = np.cumsum(is_mask, axis=1)[rows, cols] - 1
    shape = (is_mask.shape[0], max(int(is_mask.sum(axis=1).max(initial=0)), 1), scores.shape[-1])
    out_scores = np.full(shape, np.nan, dtype=np.float32)
    out_tokens = np.full(shape, -1, dtype=np.int64)
    out_scores[rows, slot] = scores[rows, cols]
    out_tokens[rows, slot] = tokens[rows, cols]
    return {"scores": out_scores, "tokens": out_tokens}


def row_predictions(tokenizer, input_ids: np.ndarray, scores: np.ndarray, tokens: np.ndarray,
                    token_str: dict[int, str]) -> list[dict]:
    """One row's predictions, mask by mask, as transformers' pipeline writes them."""
    positions = np.flatnonzero(input_ids == tokenizer.mask_token_id)
    single_mask = len(positions) == 1
    out = []
    for mask, position in enumerate(positions):
        for score, token in zip(scores[mask], tokens[mask]):
            token = int(token)
            filled = input_ids.copy()
            filled[position] = token
            filled = filled[filled != tokenizer.pad_token_id]  # as transformers does
            if token not in token_str:
                token_str[token] = tokenizer.decode([token])
            out.append({"score": float(score), "token": token, "token_str": token_str[token],
                        "sequence": tokenizer.decode(filled.tolist(),
                                                     skip_special_tokens=single_mask),
                        "mask": mask})
    return out


register(FillMask())
