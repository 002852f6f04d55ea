"""Tiny random masked-LM models built offline for fill-mask tests: BERT and DistilBERT on the
WordPiece tokenizer of `tests.tiny_models`, and a RoBERTa on a byte-level BPE tokenizer (its mask
token `<mask>`, which swallows the space before it, as roberta-base's does)."""
from __future__ import annotations

from pathlib import Path

from tests.tiny_models import (
    INIT_RANGE, TRAINING_TEXT, bert_config, distilbert_config, fast_tokenizer, save,
)


def build_bert_mlm(folder: Path, seed: int = 10) -> str:
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer()
    config = bert_config(tokenizer)
    config.architectures = ["BertForMaskedLM"]
    return save(BertForMaskedLM(config).eval(), tokenizer, folder)


def build_distilbert_mlm(folder: Path, seed: int = 11) -> str:
    import torch
    from transformers import DistilBertForMaskedLM

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer()
    config = distilbert_config(tokenizer, architectures=["DistilBertForMaskedLM"])
    return save(DistilBertForMaskedLM(config).eval(), tokenizer, folder)


def roberta_tokenizer(model_max_length: int = 64):
    from tokenizers import (
        AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAINING_TEXT * 5, trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=model_max_length)


def build_roberta_mlm(folder: Path, seed: int = 12) -> str:
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(seed)
    tokenizer = roberta_tokenizer()
    # RoBERTa numbers positions from pad_token_id + 1: 64 tokens need 64 + 2 positions
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=37,
                           max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           initializer_range=INIT_RANGE, architectures=["RobertaForMaskedLM"])
    return save(RobertaForMaskedLM(config).eval(), tokenizer, folder)
