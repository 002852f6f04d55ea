"""Quality metrics against gold: pure functions over plain Python values, computed with each
field's standard implementation (scikit-learn, seqeval, rouge-score, sacrebleu; SQuAD v1.1's
official evaluation semantics). Task modules adapt their output columns to these; training and
evaluation code call them directly. Nothing here knows about Arrow, Ray or models.

Scales follow each field's convention: classification, NER, ROUGE and fill-mask in [0, 1];
SQuAD exact match / F1 and sacreBLEU / chrF in [0, 100].

The libraries are the `eval` extra (`pip install corpusmill[eval]`); they are imported when a
metric is computed, so inference never needs them.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from corpusmill.errors import JobError

EVAL_EXTRA = "pip install 'corpusmill[eval]'"


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise JobError(f"computing this metric needs the {package} package: {EVAL_EXTRA} "
                       f"(or pip install {package})") from None


# ---------------------------------------------------------------- classification

def classification_metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict:
    """Accuracy, macro and micro F1, per-class precision / recall / F1 / support and the
    confusion matrix (rows: gold, columns: predicted), from scikit-learn. Classes are those
    seen in either gold or predictions, sorted (scikit-learn's own default)."""
    metrics = _require("sklearn.metrics", "scikit-learn")
    labels = sorted(set(gold) | set(predicted))
    # as integer codes (the same scores; scikit-learn re-encodes strings in every call)
    code = {label: i for i, label in enumerate(labels)}
    gold = np.fromiter((code[g] for g in gold), dtype=np.int64, count=len(gold))
    predicted = np.fromiter((code[p] for p in predicted), dtype=np.int64, count=len(predicted))
    codes = list(range(len(labels)))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        gold, predicted, labels=codes, zero_division=0)
    matrix = metrics.confusion_matrix(gold, predicted, labels=codes)
    return {
        "accuracy": float(metrics.accuracy_score(gold, predicted)),
        "macro_f1": float(metrics.f1_score(gold, predicted, labels=codes, average="macro",
                                           zero_division=0)),
        "micro_f1": float(metrics.f1_score(gold, predicted, labels=codes, average="micro",
                                           zero_division=0)),
        "per_class": {label: {"precision": float(p), "recall": float(r), "f1": float(f),
                              "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support)},
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
    }


# ---------------------------------------------------------------- NER (entity level)

def words(text: str) -> list[tuple[int, int]]:
    """The text's words as (start, end) character offsets: its whitespace-separated pieces.
    Gold BIO tags are given per such word (CoNLL-style tokens joined with spaces)."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def split_entity_label(label: str) -> tuple[str, str | None]:
    """'B-PER' -> ('PER', 'B'); 'PER' -> ('PER', None)."""
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIES":
        return label[2:], label[0]
    return label, None


def bio_tags(text: str, spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """BIO tags per word of `text` for character spans (start, end, label): a word that
    overlaps a span is tagged with its type, `B-` for the span's first word, `I-` after. The
    label may itself carry a B-/I- prefix (token-level predictions, aggregation `none`): the
    word then takes the prefix of the first such span it overlaps. Spans earlier in the
    list win a word that several overlap."""
    word_spans = words(text)
    tags = ["O"] * len(word_spans)
    for start, end, label in spans:
        kind, prefix = split_entity_label(label)
        first = True
        for i, (w_start, w_end) in enumerate(word_spans):
            if w_end <= start or w_start >= end:
                continue
            if tags[i] == "O":
                if prefix is None:
                    tags[i] = f"{'B' if first else 'I'}-{kind}"
                else:
                    tags[i] = f"{'I' if prefix in 'IE' else 'B'}-{kind}"
            first = False
    return tags


def entity_metrics(gold_tags: Sequence[Sequence[str]],
                   predicted_tags: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision, recall and F1 (micro over entities, as conlleval), macro F1 over
    entity types, and per-type scores, from seqeval (default, conlleval-compatible mode)."""
    seqeval = _require("seqeval.metrics", "seqeval")
    gold_tags, predicted_tags = [list(t) for t in gold_tags], [list(t) for t in predicted_tags]
    report = seqeval.classification_report(gold_tags, predicted_tags, output_dict=True,
                                           zero_division=0)
    per_type = {kind: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                       "f1": float(v["f1-score"]), "support": int(v["support"])}
                for kind, v in report.items() if not kind.endswith(" avg")}
    return {
        "precision": float(seqeval.precision_score(gold_tags, predicted_tags, zero_division=0)),
        "recall": float(seqeval.recall_score(gold_tags, predicted_tags, zero_division=0)),
        "f1": float(seqeval.f1_score(gold_tags, predicted_tags, zero_division=0)),
        "macro_f1": float(seqeval.f1_score(gold_tags, predicted_tags, average="macro",
                                           zero_division=0)),
        "accuracy": float(seqeval.accuracy_score(gold_tags, predicted_tags)),
        "per_type": per_type,
    }


# ---------------------------------------------------------------- extractive QA (SQuAD v1.1)
# The official SQuAD v1.1 evaluation semantics. No package installable offline ships them:
# the `evaluate` package fetches its squad script from the Hugging Face hub at run time, and
# torchmetrics' SQuAD scores an empty-after-normalisation pair as F1 1 (SQuAD 2.0's rule;
# v1.1 gives 0). tests/unit/test_metrics.py checks these against both.

_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the, and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_exact_match(prediction: str, gold: str) -> float:
    return float(squad_normalize(prediction) == squad_normalize(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised answers (0 when nothing overlaps)."""
    predicted, expected = squad_normalize(prediction).split(), squad_normalize(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]) -> dict:
    """Exact match and F1 in [0, 100], each question scored against its best gold answer."""
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for prediction, golds in zip(predictions, gold_answers, strict=True):
        em += max(squad_exact_match(prediction, g) for g in golds)
        f1 += max(squad_f1(prediction, g) for g in golds)
    return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}


# ---------------------------------------------------------------- generated text

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]],
                  use_stemmer: bool = False) -> dict:
    """Mean ROUGE-1 / ROUGE-2 / ROUGE-L F-measure (and precision, recall) over rows, from
    rouge-score; a row with several references takes the best one per ROUGE type."""
    rouge_scorer = _require("rouge_score.rouge_scorer", "rouge-score")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = {kind: [0.0, 0.0, 0.0] for kind in ROUGE_TYPES}
    for prediction, refs in zip(predictions, references, strict=True):
        scores = scorer.score_multi(list(refs), prediction)
        for kind in ROUGE_TYPES:
            for i, value in enumerate(scores[kind]):
                totals[kind][i] += value
    n = max(len(predictions), 1)
    result = {kind: totals[kind][2] / n for kind in ROUGE_TYPES}
    result["detail"] = {kind: {"precision": totals[kind][0] / n, "recall": totals[kind][1] / n,
                               "fmeasure": totals[kind][2] / n} for kind in ROUGE_TYPES}
    return result


def translation_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]],
                        tokenize: str = "13a") -> dict:
    """Corpus sacreBLEU and chrF in [0, 100], from sacrebleu, with its signatures. Rows may have
    different numbers of references."""
    sacrebleu = _require("sacrebleu", "sacrebleu")
    depth = max((len(r) for r in references), default=1)
    streams = [[refs[i] if i < len(refs) else None for refs in references]
               for i in range(depth)]
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(list(predictions), streams)
    chrf_score = chrf.corpus_score(list(predictions), streams)
    return {"bleu": float(bleu_score.score), "chrf": float(chrf_score.score),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


# ---------------------------------------------------------------- fill-mask

def fill_normalize(token: str) -> str:
    """How a predicted token and a gold word are compared: trimmed, case-folded, without a
    WordPiece `##` or a byte-level BPE space marker."""
    return token.strip().removeprefix("##").removeprefix("Ġ").removeprefix("▁").casefold()


def fill_mask_metrics(ranked: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> dict:
    """Top-1 accuracy (scikit-learn's, over masks) and top-k accuracy (the share of masks whose
    gold word is among the k best): `ranked[i]` is mask i's predicted tokens, best first;
    `gold[i]` its expected word, compared as `fill_normalize` says."""
    metrics = _require("sklearn.metrics", "scikit-learn")
    expected = [fill_normalize(g) for g in gold]
    candidates = [[fill_normalize(t) for t in tokens] for tokens in ranked]
    if not expected:
        return {"top1_accuracy": 0.0, "top_k_accuracy": 0.0, "k": k, "masks": 0}
    top1 = [tokens[0] if tokens else "" for tokens in candidates]
    hits = sum(e in tokens[:k] for e, tokens in zip(expected, candidates, strict=True))
    return {"top1_accuracy": float(metrics.accuracy_score(expected, top1)),
            "top_k_accuracy": hits / len(expected), "k": k, "masks": len(expected)}
