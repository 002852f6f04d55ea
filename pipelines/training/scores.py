"""The validation metrics training computes, one function per kind of output: the only place
the training tasks turn predictions into scores. Each delegates to the project's per-task
quality metrics (`pipelines/metrics.py`: scikit-learn, seqeval, SQuAD v1.1, rouge-score,
sacrebleu), so a trained model's validation figures and `corpusmill evaluate`'s figures on the
same rows are computed the same way."""
from __future__ import annotations

from typing import Sequence

from corpusmill.pipelines.metrics import (
    classification_metrics, entity_metrics, rouge_metrics, squad_metrics, translation_metrics,
)


def classification_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict:
    """Accuracy, macro and micro F1, per-class scores and the confusion matrix."""
    return classification_metrics(gold, predicted)


def multi_label_scores(gold: Sequence[Sequence[int]],
                       predicted: Sequence[Sequence[int]]) -> dict[str, float]:
    """Multi-hot rows: exact-set accuracy, micro and macro F1 (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"subset_accuracy": float(accuracy_score(gold, predicted)),
            "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0))}


def tagging_scores(gold_tags: Sequence[Sequence[str]],
                   predicted_tags: Sequence[Sequence[str]]) -> dict:
    """Per-word BIO tags of each row: entity-level precision, recall, F1 (seqeval, as
    conlleval), macro F1 over types, word accuracy, per-type scores."""
    return entity_metrics(gold_tags, predicted_tags)


def answer_scores(predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]) -> dict:
    """Extractive answers: SQuAD exact match and F1 in [0, 100], each against the row's best
    gold answer."""
    return squad_metrics(predictions, gold_answers)


def generation_scores(task: str, predictions: Sequence[str],
                      references: Sequence[str]) -> dict:
    """Generated texts against one reference each: sacreBLEU and chrF for translation, ROUGE
    for summarization and text2text-generation."""
    refs = [[r] for r in references]
    if task == "translation":
        return translation_metrics(predictions, refs)
    return rouge_metrics(predictions, refs)
