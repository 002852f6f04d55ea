"""Tiny random NLI-shaped classifiers (2 layers, width 32) for zero-shot-classification's NLI mode:
`*ForSequenceClassification` checkpoints whose labels are contradiction / neutral / entailment,
built offline with the WordPiece tokenizer of `tests.tiny_models` (pair template
`[CLS] A [SEP] B [SEP]`). Wide init so scores vary from text to text: `NLI_INIT_RANGE` (15 times
the usual 0.02; at `tests.tiny_models.INIT_RANGE` = 0.6 the DistilBERT's entailment-vs-contradiction
logits differ by up to ~38 and two thirds of its multi-label scores round to exactly 1.0, whose
order among themselves then says nothing). Each builds in well under a second."""
from __future__ import annotations

from pathlib import Path

from tests.tiny_models import bert_config, distilbert_config, fast_tokenizer, save

NLI_INIT_RANGE = 0.3

# as roberta-large-mnli and bart-large-mnli name them: entailment last, contradiction first
MNLI_UPPER = ("CONTRADICTION", "NEUTRAL", "ENTAILMENT")
# as many DeBERTa NLI checkpoints name them: entailment first, so transformers takes the LAST
# label as contradiction
ENTAILMENT_FIRST = ("entailment", "neutral", "contradiction")


def nli_labels(names: tuple[str, ...]) -> dict:
    id2label = dict(enumerate(names))
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def build_bert_nli(folder: Path, names: tuple[str, ...] = MNLI_UPPER, seed: int = 11) -> str:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer()
    config = bert_config(tokenizer, **nli_labels(names))
    config.initializer_range = NLI_INIT_RANGE
    return save(BertForSequenceClassification(config).eval(), tokenizer, folder)


def build_distilbert_nli(folder: Path, names: tuple[str, ...] = ENTAILMENT_FIRST,
                         seed: int = 12) -> str:
    import torch
    from transformers import DistilBertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer()
    config = distilbert_config(tokenizer, initializer_range=NLI_INIT_RANGE, **nli_labels(names))
    return save(DistilBertForSequenceClassification(config).eval(), tokenizer, folder)


def build_bert_sentiment(folder: Path, seed: int = 13) -> str:
    """A classifier whose labels name no entailment: NLI mode must refuse it."""
    return build_bert_nli(folder, names=("NEGATIVE", "POSITIVE"), seed=seed)
