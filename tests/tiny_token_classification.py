"""Tiny random token classifiers (NER-shaped labels) built offline, plus one rigged model whose
entities are known in advance, for window-boundary tests.

- BERT with a WordPiece tokenizer (`##` continuations, WordPiece decoder): transformers decides
  subwords from the token strings.
- DistilBERT with a BPE tokenizer that marks no continuations: transformers falls back to its
  "no space before it" heuristic. The two cover both of its subword rules.
"""
from __future__ import annotations

from pathlib import Path

from tests.tiny_models import (
    bert_config, distilbert_config, fixed_wordpiece, save, train_bert_style,
)

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
# Added to the random head's `O` logit so that roughly half the tokens are O, as in real text;
# with an unbiased head almost every token is some entity and `ignore_labels` proves little.
O_BIAS = 1.5
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def ner_labels() -> dict:
    id2label = dict(enumerate(NER_LABELS))
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def _wrap(tok, model_max_length: int):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length)


def wordpiece_tokenizer(model_max_length: int = 64):
    """The tiny WordPiece tokenizer of tests.tiny_models, with a decoder that joins `##`; its
    vocabulary fixed by construction, so every build of a model is the same model (a trained
    vocabulary differs between builds, and with it which entity types a random head finds)."""
    from tokenizers import decoders

    tok = fixed_wordpiece()
    tok.decoder = decoders.WordPiece()
    return _wrap(tok, model_max_length)


def bpe_tokenizer(model_max_length: int = 64, vocab_size: int = 300):
    """A BPE tokenizer without continuation marks (`continuing_subword_prefix` None)."""
    from tokenizers import models, trainers

    tok = train_bert_style(models.BPE(unk_token="[UNK]"),
                           trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    return _wrap(tok, model_max_length)


def _bias_towards_o(model) -> None:
    import torch

    with torch.no_grad():
        model.classifier.bias[NER_LABELS.index("O")] += O_BIAS


def build_bert_ner(folder: Path, seed: int = 10) -> str:
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    tokenizer = wordpiece_tokenizer()
    config = bert_config(tokenizer, **ner_labels())
    config.architectures = ["BertForTokenClassification"]
    model = BertForTokenClassification(config).eval()
    _bias_towards_o(model)
    return save(model, tokenizer, folder)


def build_distilbert_ner(folder: Path, seed: int = 11) -> str:
    import torch
    from transformers import DistilBertForTokenClassification

    torch.manual_seed(seed)
    tokenizer = bpe_tokenizer()
    config = distilbert_config(tokenizer, **ner_labels())
    model = DistilBertForTokenClassification(config).eval()
    _bias_towards_o(model)
    return save(model, tokenizer, folder)


# The rigged model tags exactly these words, whatever their context: a 3-token LOC entity.
RIGGED_ENTITY = {"quick": "B-LOC", "brown": "I-LOC", "fox": "I-LOC"}


def build_rigged_ner(folder: Path) -> str:
    """A BERT without encoder layers whose embeddings and head are set by hand: every token is
    `O` except those of `RIGGED_ENTITY`, in every context and at every position. Each label has
    its own embedding direction; the head reads the direction back."""
    import torch
    from transformers import BertForTokenClassification

    tokenizer = wordpiece_tokenizer()
    config = bert_config(tokenizer, **ner_labels())
    config.num_hidden_layers = 0
    config.architectures = ["BertForTokenClassification"]
    model = BertForTokenClassification(config).eval()
    vocab = tokenizer.get_vocab()
    hidden = config.hidden_size
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        emb.LayerNorm.weight.fill_(1.0)
        emb.LayerNorm.bias.zero_()
        words = torch.zeros(config.vocab_size, hidden)
        words[:, NER_LABELS.index("O")] = 1.0           # every token: the O direction
        for word, label in RIGGED_ENTITY.items():
            words[vocab[word]] = 0.0
            words[vocab[word], NER_LABELS.index(label)] = 1.0
        words[:, hidden - 1] = -1.0  # a constant counterweight so LayerNorm keeps the peak
        emb.word_embeddings.weight.copy_(words)
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for i in range(len(NER_LABELS)):
            model.classifier.weight[i, i] = 4.0
    return save(model, tokenizer, folder)
