"""Tiny random encoder-decoder models built offline (T5, BART, Marian): 2 layers, width 32,
tokenizers trained with the `tokenizers` library, saved with `save_pretrained`.

- T5: a Unigram (SentencePiece-style) vocabulary inside transformers' own `T5Tokenizer`, with
  the sentinels `<extra_id_0>`..`<extra_id_99>` as special tokens at the end of the vocabulary
  (as in real T5 checkpoints), and `task_specific_params` like t5-small's (prefixes and
  generation settings for summarization and translation).
- BART: byte-level BPE, `<s> ... </s>`, `forced_bos_token_id` like facebook/bart-large-cnn.
- Marian: a Unigram vocabulary in a fast tokenizer folder (`tokenizer.json`). Real opus-mt
  folders carry `source.spm`/`target.spm` for `MarianTokenizer`, which needs the
  `sentencepiece` package (not installed here); `AutoTokenizer` loads this folder without it.

Weights use a wide initialisation so random models give outputs that differ between inputs.
"""
from __future__ import annotations

from pathlib import Path

from tests.corpora import WORDS
from tests.tiny_models import TRAINING_TEXT, save

INIT_STD = 0.6   # BART init_std; at the usual 0.02 every input gets the same output
MARIAN_INIT_STD = 1.0  # Marian at 0.6 repeats one token for most inputs (26 of 100 distinct)
T5_INIT_FACTOR = 8.0  # T5 scales its init by d_model**-0.5 etc.; this widens it similarly
SENTINELS = [f"<extra_id_{i}>" for i in range(100)]

ARTICLES = Path(__file__).parents[1] / "jobs" / "examples" / "data" / "articles.parquet"
TASK_WORDS = "summarize: translate English to German: translate English to French:"


def training_texts() -> list[str]:
    """What the tokenizers learn from: the shared training sentences, every test-corpus word,
    the T5 task prefixes and the sample articles (~100 KB), so a vocabulary of ~1,000 pieces
    fills up and the test inputs map to real pieces, not <unk>."""
    import pyarrow.parquet as pq

    bodies = pq.read_table(ARTICLES, columns=["body"]).column("body").to_pylist()
    return TRAINING_TEXT * 5 + [" ".join(WORDS)] * 5 + [TASK_WORDS] * 5 + bodies


def unigram_pieces(texts: list[str], size: int) -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary built directly (the `tokenizers` Unigram trainer
    takes ~15 s on this corpus on 2 busy cores): the most frequent words as "▁word" pieces,
    then the most frequent 2-3 character pieces, then every character seen (so nothing needs
    <unk> that the corpus covers); scores are log frequencies."""
    import math
    from collections import Counter

    words = Counter(w for text in texts for w in text.split())
    chars = Counter(c for word, n in words.items() for c in word for _ in range(n))
    grams = Counter(word[i:i + k] for word, n in words.items() for k in (2, 3)
                    for i in range(len(word) - k + 1) for _ in range(min(n, 3)))
    total = sum(words.values()) + sum(chars.values())
    pieces: dict[str, float] = {"▁": math.log(len(texts) / total)}
    for char, n in chars.items():
        pieces.setdefault(char, math.log(n / total) - 4.0)
        pieces.setdefault("▁" + char, math.log(n / total) - 5.0)
    budget = size - len(pieces)
    for gram, n in grams.most_common(budget // 3):
        pieces.setdefault(gram, math.log(n / total) - 2.0)
    for word, n in words.most_common():
        if len(pieces) >= size:
            break
        pieces.setdefault("▁" + word, math.log(n / total))
    return sorted(pieces.items(), key=lambda item: -item[1])


def unigram_tokenizer(specials: list[str], size: int, texts: list[str] | None = None):
    """A Unigram tokenizer with the Metaspace pre-tokenizer, as SentencePiece models convert."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = [(s, 0.0) for s in specials] + unigram_pieces(texts or training_texts(), size)
    tok = Tokenizer(models.Unigram(vocab, unk_id=specials.index("<unk>"), byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok, vocab


def t5_tokenizer(texts: list[str] | None = None, model_max_length: int = 64):
    """transformers' T5Tokenizer over a freshly trained Unigram vocabulary: <pad>=0, </s>=1,
    <unk>=2, the pieces, then the 100 sentinels (reversed, as in T5)."""
    from transformers import T5Tokenizer

    _, pieces = unigram_tokenizer(["<pad>", "</s>", "<unk>"], 1000, texts)
    vocab = pieces + [(s, 0.0) for s in reversed(SENTINELS)]
    return T5Tokenizer(vocab=vocab, extra_ids=100, model_max_length=model_max_length)


def marian_tokenizer(texts: list[str] | None = None, model_max_length: int = 64):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok, _ = unigram_tokenizer(["</s>", "<unk>", "<pad>"], 1000, texts)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=model_max_length)


def bart_tokenizer(texts: list[str] | None = None, model_max_length: int = 64):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts or training_texts(), trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=model_max_length)


# t5-small's task_specific_params, shortened (max_length, num_beams) to keep tests quick
T5_TASK_PARAMS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 14,
                      "min_length": 5, "no_repeat_ngram_size": 3, "num_beams": 3,
                      "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 20, "num_beams": 4,
                             "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 20, "num_beams": 4,
                             "prefix": "translate English to French: "},
}


def build_t5(folder: Path, seed: int = 0, texts: list[str] | None = None,
             task_specific_params: dict | None = T5_TASK_PARAMS) -> str:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = t5_tokenizer(texts)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                      num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id,
                      initializer_factor=T5_INIT_FACTOR,
                      task_specific_params=task_specific_params)
    config.architectures = ["T5ForConditionalGeneration"]
    return save(T5ForConditionalGeneration(config).eval(), tokenizer, folder)


def build_bart(folder: Path, seed: int = 1, texts: list[str] | None = None) -> str:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = bart_tokenizer(texts)
    config = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=2,
                        decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                        encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=96,
                        init_std=INIT_STD, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        decoder_start_token_id=tokenizer.eos_token_id,
                        forced_bos_token_id=tokenizer.bos_token_id,
                        forced_eos_token_id=tokenizer.eos_token_id)
    config.architectures = ["BartForConditionalGeneration"]
    return save(BartForConditionalGeneration(config).eval(), tokenizer, folder)


def build_marian(folder: Path, seed: int = 2, texts: list[str] | None = None) -> str:
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    tokenizer = marian_tokenizer(texts)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=2,
                          decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                          encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=96,
                          init_std=MARIAN_INIT_STD, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id,
                          forced_eos_token_id=tokenizer.eos_token_id)
    config.architectures = ["MarianMTModel"]
    return save(MarianMTModel(config).eval(), tokenizer, folder)


def build_gpt2(folder: Path, seed: int = 3) -> str:
    """A decoder-only model, for check_model's refusal."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = bart_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                        n_positions=96, pad_token_id=tokenizer.pad_token_id)
    config.architectures = ["GPT2LMHeadModel"]
    return save(GPT2LMHeadModel(config).eval(), tokenizer, folder)
