"""The validation metrics training computes, one function per kind of output: the only place
the training tasks turn predictions into scores, with scikit-learn. Each function takes plain
Python values, so it swaps for the project's per-task quality metrics (`pipelines/metrics.py`,
issue 13) without touching the tasks."""
from __future__ import annotations

from typing import Sequence


def classification_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro F1 (over the labels seen in gold or predictions)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0))}


def multi_label_scores(gold: Sequence[Sequence[int]],
                       predicted: Sequence[Sequence[int]]) -> dict[str, float]:
    """Multi-hot rows: exact-set accuracy, micro and macro F1."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"subset_accuracy": float(accuracy_score(gold, predicted)),
            "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0))}


def tagging_scores(gold_tags: Sequence[Sequence[str]],
                   predicted_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Per-word tags of each row: micro F1 over the words' entity tags (every tag but `O`) and
    word accuracy."""
    from sklearn.metrics import accuracy_score, f1_score

    gold = [t for row in gold_tags for t in row]
    predicted = [t for row in predicted_tags for t in row]
    entity_tags = sorted({t for t in gold + predicted if t != "O"})
    f1 = (f1_score(gold, predicted, labels=entity_tags, average="micro", zero_division=0)
          if entity_tags else 0.0)
    return {"f1": float(f1), "accuracy": float(accuracy_score(gold, predicted))}


def answer_scores(predictions: Sequence[str],
                  gold_answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Extractive answers: exact match in [0, 100], a prediction against its row's best gold
    answer (compared with surrounding whitespace and case ignored)."""
    from sklearn.metrics import accuracy_score

    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    matched = [norm(p) if any(norm(p) == norm(g) for g in golds) else None
               for p, golds in zip(predictions, gold_answers, strict=True)]
    hits = [m is not None for m in matched]
    return {"exact_match": 100.0 * float(accuracy_score([True] * len(hits), hits))
            if hits else 0.0}
