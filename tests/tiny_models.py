"""Tiny random transformers models built offline: a WordPiece tokenizer trained with the
`tokenizers` library and 2-layer, width-32 models saved with `save_pretrained`. Each builds in
well under a second."""
from __future__ import annotations

from pathlib import Path

# Wide initial weights so that random models' outputs vary with the text (at the usual 0.02,
# every text gets the same label, and a label-parity test would prove little).
INIT_RANGE = 0.6

TRAINING_TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "a great movie with a terrible ending and wonderful actors",
    "the market fell sharply after the central bank raised rates",
    "our team won the match in the final minute of extra time",
    "add the butter and sugar then bake for twenty minutes",
    "the new phone has a faster chip and a brighter screen",
    "scientists observed a distant galaxy with the space telescope",
    "the senate passed the budget bill after a long debate",
    "patients with the flu should rest and drink plenty of water",
    "we flew to the island and stayed in a small hotel by the beach",
    "I loved it! Would buy again. Terrible service though...",
    "numbers 1234 5678 and punctuation ; : , . ! ? ( ) [ ] { }",
]


def train_bert_style(model, trainer):
    """A `tokenizers` tokenizer of `model` trained by `trainer` on TRAINING_TEXT, with BERT's
    lower-casing normalizer, pre-tokenizer and `[CLS] A [SEP] B [SEP]` template."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors

    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(TRAINING_TEXT * 5, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def train_wordpiece(vocab_size: int = 400):
    from tokenizers import models, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return train_bert_style(models.WordPiece(unk_token="[UNK]"),
                            trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                      special_tokens=specials))


def fixed_wordpiece():
    """A BERT-style WordPiece tokenizer whose vocabulary is fixed by construction rather than
    trained (the `tokenizers` WordPiece trainer breaks ties differently from run to run, so a
    trained vocabulary differs between builds): the special tokens, every character of
    TRAINING_TEXT alone and as a `##` continuation, and its whole words. Other words still
    split into several pieces."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = sorted({word for text in TRAINING_TEXT for word, _ in
                    pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))})
    chars = sorted({c for word in words for c in word})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + chars + [f"##{c}" for c in chars] + [w for w in words if len(w) > 1]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))])
    return tok


def fast_tokenizer(model_max_length: int = 64, fixed: bool = False):
    """A BERT-style fast tokenizer: trained WordPiece, or `fixed` (the same in every build)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=fixed_wordpiece() if fixed else train_wordpiece(), unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_max_length=model_max_length)


def bert_config(tokenizer, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                      pad_token_id=tokenizer.pad_token_id, initializer_range=INIT_RANGE, **extra)


def distilbert_config(tokenizer, **extra):
    from transformers import DistilBertConfig

    settings = dict(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                    max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                    initializer_range=INIT_RANGE)
    return DistilBertConfig(**{**settings, **extra})


def labels(n: int) -> dict:
    id2label = {i: f"LABEL_{chr(ord('A') + i)}" for i in range(n)}
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def save(model, tokenizer, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def build_bert_classifier(folder: Path, num_labels: int = 3, multi_label: bool = False,
                          seed: int = 0, fixed_vocab: bool = False) -> str:
    """`fixed_vocab`: the fixed WordPiece tokenizer, the same for every model built so."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer(fixed=fixed_vocab)
    extra = {"problem_type": "multi_label_classification"} if multi_label else {}
    config = bert_config(tokenizer, **labels(num_labels), **extra)
    config.architectures = ["BertForSequenceClassification"]
    return save(BertForSequenceClassification(config).eval(), tokenizer, folder)


def build_distilbert_classifier(folder: Path, num_labels: int = 2, seed: int = 1) -> str:
    import torch
    from transformers import DistilBertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer()
    config = distilbert_config(tokenizer, **labels(num_labels))
    return save(DistilBertForSequenceClassification(config).eval(), tokenizer, folder)


def build_bert_encoder(folder: Path, seed: int = 2, fixed_vocab: bool = False) -> str:
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer(fixed=fixed_vocab)
    return save(BertModel(bert_config(tokenizer)).eval(), tokenizer, folder)
