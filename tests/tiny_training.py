"""Tiny bases that learn in a few seconds, and small labelled corpora whose labels follow from
their words, for training tests.

The inference tests' tiny models use a wide initialisation so that random outputs vary; a base
to fine-tune wants the usual one (0.02), or a few epochs learn nothing. The tokenizers are the
ones of `tests.tiny_models` / `tests.tiny_seq2seq`, and the corpora use words they know."""
from __future__ import annotations

import random
from pathlib import Path

from tests.conftest import write_job, write_parquet
from tests.tiny_models import bert_config, fast_tokenizer, save

TOPICS = {  # no word in two topics
    "sports": "team won match final minute extra time".split(),
    "food": "add butter sugar then bake twenty minutes".split(),
    "tech": "new phone has faster chip brighter screen".split(),
}
PEOPLE = ["fox", "dog"]
PLACES = ["island", "beach", "hotel"]
FILLER = "the quick brown movie market bank rates senate budget water".split()


def build_bert_base(folder: Path, seed: int = 0, max_length: int = 64) -> str:
    """A BERT with a masked-LM head at the usual initialisation, width 64 and no dropout (at
    width 32 with dropout, 60 steps did not separate three topics): a base for every encoder
    task (classification, NER and QA heads are new; fill-mask keeps its head)."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    tokenizer = fast_tokenizer(model_max_length=max_length)
    config = bert_config(tokenizer)
    config.initializer_range = 0.02
    config.hidden_size = 64
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.max_position_embeddings = max(64, max_length)
    config.architectures = ["BertForMaskedLM"]
    return save(BertForMaskedLM(config).eval(), tokenizer, folder)


def build_t5_base(folder: Path, seed: int = 0) -> str:
    """A tiny T5 at the usual initialisation, with t5-small-style task prefixes."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from tests.tiny_seq2seq import T5_TASK_PARAMS, t5_tokenizer

    torch.manual_seed(seed)
    tokenizer = t5_tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                      num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id,
                      task_specific_params=T5_TASK_PARAMS)
    config.architectures = ["T5ForConditionalGeneration"]
    return save(T5ForConditionalGeneration(config).eval(), tokenizer, folder)


def topic_rows(n: int, seed: int = 0) -> list[dict]:
    """Texts drawn from one topic's words (plus filler); label: the topic."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(sorted(TOPICS))
        words = rng.sample(TOPICS[topic], 5) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        rows.append({"doc_id": f"t{i:03d}", "body": " ".join(words), "topic": topic})
    return rows


def tagged_rows(n: int, seed: int = 0) -> list[dict]:
    """Words with BIO tags (PER: a person word, LOC: a place word and the next word), and the
    same rows as text with character spans."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words, tags = [], []
        for _ in range(rng.randint(4, 12)):
            r = rng.random()
            if r < 0.2:
                words.append(rng.choice(PEOPLE))
                tags.append("B-PER")
            elif r < 0.35:
                words += [rng.choice(PLACES), rng.choice(FILLER)]
                tags += ["B-LOC", "I-LOC"]
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
        text, spans = "", []
        for word, tag in zip(words, tags):
            start = len(text) + (1 if text else 0)
            text = f"{text} {word}" if text else word
            if tag.startswith("B-"):
                spans.append({"start": start, "end": len(text), "label": tag[2:]})
            elif tag.startswith("I-"):
                spans[-1]["end"] = len(text)
        rows.append({"doc_id": f"n{i:03d}", "words": words, "tags": tags, "text": text,
                     "spans": spans})
    return rows


def qa_rows(n: int, seed: int = 0, filler: int = 30) -> list[dict]:
    """'where did the PERSON go' answered by the place in 'the PERSON went to the PLACE',
    inside up to `filler` words on each side (long contexts get several windows)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        person, place = rng.choice(PEOPLE), rng.choice(PLACES)
        before = " ".join(rng.choice(FILLER) for _ in range(rng.randint(2, filler)))
        after = " ".join(rng.choice(FILLER) for _ in range(rng.randint(2, filler)))
        fact = f"the {person} went to the {place}"
        context = f"{before} {fact} {after}"
        rows.append({"doc_id": f"q{i:03d}", "question": f"where did the {person} go",
                     "context": context, "answer": place,
                     "answer_start": context.index(fact) + len(fact) - len(place)})
    return rows


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """text -> target: the target is the text's first three words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER + PLACES) for _ in range(rng.randint(4, 10))]
        rows.append({"doc_id": f"p{i:03d}", "text": " ".join(words),
                     "target": " ".join(words[:3])})
    return rows


def write_training(tmp_path: Path, rows: list[dict], output: str | None = None,
                   **spec) -> tuple[Path, Path | str]:
    """`rows` as Parquet in tmp_path/data and a train spec over them (ids from `doc_id`, a
    quarter held out) into `output` (default tmp_path/model): (the spec file, the output)."""
    data = write_parquet(tmp_path / "data" / "rows.parquet",
                         {k: [r[k] for r in rows] for k in rows[0]})
    output = output or tmp_path / "model"
    job = write_job(tmp_path / "train.yaml", input=str(data), output=str(output),
                    id_column="doc_id", **{"validation": {"split": 0.25}, **spec})
    return job, output
