"""Tiny random extractive-QA models built offline (2 layers, width 32, wide init so answers vary
with the text): BERT with the fixed WordPiece vocabulary of `tests.tiny_models`, and Longformer
(4,096 positions, 16-token local attention window) with a byte-level BPE tokenizer, RoBERTa
style. Each build gives bit-identical weights and vocabularies (seeded; no trained WordPiece):
answers recorded once from transformers 4.57.6 (tests/qa_reference.py) stay valid."""
from __future__ import annotations

from pathlib import Path

from tests.tiny_models import INIT_RANGE, TRAINING_TEXT, fast_tokenizer, save

BERT_MAX_LENGTH = 256
LONGFORMER_MAX_LENGTH = 4096


def build_bert_qa(folder: Path, seed: int = 10) -> str:
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    # fixed: the recorded reference answers (tests/qa_reference.py) need the same model each build
    tokenizer = fast_tokenizer(model_max_length=BERT_MAX_LENGTH, fixed=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=BERT_MAX_LENGTH,
                        pad_token_id=tokenizer.pad_token_id, initializer_range=INIT_RANGE)
    return save(BertForQuestionAnswering(config).eval(), tokenizer, folder)


def train_byte_level_bpe(vocab_size: int = 500):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAINING_TEXT * 5, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    return tok


def longformer_tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(), bos_token="<s>", eos_token="</s>",
        sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", model_max_length=LONGFORMER_MAX_LENGTH,
        model_input_names=["input_ids", "attention_mask"])


def build_longformer_qa(folder: Path, seed: int = 11) -> str:
    import torch
    from transformers import LongformerConfig, LongformerForQuestionAnswering

    torch.manual_seed(seed)
    tokenizer = longformer_tokenizer()
    config = LongformerConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=LONGFORMER_MAX_LENGTH + 2,
        attention_window=16, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        sep_token_id=tokenizer.sep_token_id, initializer_range=INIT_RANGE)
    return save(LongformerForQuestionAnswering(config).eval(), tokenizer, folder)
