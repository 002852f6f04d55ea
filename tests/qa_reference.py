"""transformers 4.57.6's question-answering pipeline (the last release that has it) as a reference
for our question-answering task, as answers recorded once and committed
(tests/data/qa_reference_457.json, written by tests/record_qa_reference.py): the tests need
neither that old transformers nor the network.

This module holds what the recorder and the parity test share: the cases (deterministic rows
and option sets, run against the tiny BERT and Longformer of tests/tiny_question_answering.py)
and fingerprints of the models' weights and vocabularies and of each case's rows and options.
`recorded_answers(models)` gives the recorded answers only when every fingerprint still
matches: a builder, seed, torch or tokenizers change that alters the tiny models fails loudly
with the command that re-records."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from tests.corpora import WORDS

RECORDED = Path(__file__).parent / "data" / "qa_reference_457.json"
TRANSFORMERS = "4.57.6"
RERECORD = ("python tests/record_qa_reference.py (it installs transformers 4.57.6 once, outside "
            "the repository)")

ODD_WORDS = ["Fox", "FOX", "telescopes", "unbelievable", "Zürich", "naïve", "東京", "😀",
             "1,234.56", "e-mail", "don't", "(bank)", "U.S.", "rates;", "over-the-top", "x"]


def qa_rows(n: int = 210, seed: int = 0) -> list[dict]:
    """Varied (question, context) rows, deterministic: contexts of 1 token to 20,000+ words,
    emoji/CJK/accents, repeated and differently cased phrases whose scores merge, empty
    inputs."""
    rng = random.Random(seed)

    def words(k):
        return " ".join(rng.choice(WORDS + ODD_WORDS if rng.random() < 0.3 else WORDS)
                        for _ in range(k))

    def question():
        q = words(rng.randint(1, 12))
        return q[:1].upper() + q[1:] + rng.choice(["?", "?", "", " ?"])

    phrase = "the quick brown fox"
    rows = [
        {"question": "", "context": "a context"},            # empty question: row error
        {"question": "what?", "context": ""},               # empty context: row error
        {"question": "what?", "context": "   "},            # no context tokens at all
        {"question": "where is the fox?", "context": "fox"},
        {"question": "which bank?", "context": "the bank"},
        {"question": "what jumps over the dog?", "context": words(20500)},  # hundreds of windows
        {"question": "who?", "context": f"{phrase}. The Quick Brown Fox! {phrase}, THE QUICK " * 30},
        {"question": "emoji?", "context": "😀🎉 great party 🎉 東京は晴れです。 Café déjà vu — naïve façade"},
    ]
    while len(rows) < n:
        kind = rng.random()
        if kind < 0.2:
            context = words(rng.randint(1, 4))           # fewer candidate spans than top-k
        elif kind < 0.6:
            context = words(rng.randint(5, 100))
        elif kind < 0.85:
            context = words(rng.randint(100, 500))      # several windows
        else:
            context = " ".join([words(rng.randint(3, 30)), phrase] * rng.randint(2, 40))
        rows.append({"question": question(), "context": context})
    return rows


ROWS = qa_rows()
SHORTER = [r for r in ROWS if len(r["context"]) < 20000]  # without the 20,000-word context
RUNS = {  # name -> (model, options, rows)
    "bert": ("bert", {}, ROWS),
    "bert-top3-impossible": ("bert", {"top_k": 3, "handle_impossible_answer": True,
                                      "max_answer_len": 5}, SHORTER[:80]),
    "bert-tokens-small-windows": ("bert", {"align_to_words": False, "max_seq_len": 48,
                                           "doc_stride": 16, "top_k": 2}, SHORTER[:60]),
    "longformer": ("longformer", {}, ROWS),
    "longformer-4096": ("longformer", {"max_seq_len": 4096, "top_k": 2}, ROWS[:30]),
    "longformer-top5-impossible": ("longformer", {"top_k": 5, "handle_impossible_answer": True},
                                   SHORTER[:60]),
}


def build_models(root: Path) -> dict[str, str]:
    """The saved tiny models the cases run on: {"bert": folder, "longformer": folder}."""
    from tests.tiny_question_answering import build_bert_qa, build_longformer_qa

    return {"bert": build_bert_qa(root / "bert"), "longformer": build_longformer_qa(root / "lf")}


def model_fingerprint(folder: str) -> str:
    """sha256 of a saved model's tensors (name, dtype, shape, bytes) and of its tokenizer's
    vocabulary and merges: what decides the answers, not file formats or library versions."""
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    tensors = load_file(str(Path(folder) / "model.safetensors"))
    for name in sorted(tensors):
        array = tensors[name]
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    tokenizer = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))
    digest.update(json.dumps(tokenizer["model"], sort_keys=True).encode())
    return digest.hexdigest()


def case_fingerprint(model: str, options: dict, rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps([model, options, rows], sort_keys=True).encode()).hexdigest()


def recorded_answers(models: dict[str, str]) -> dict[str, list]:
    """Per case name, per row, the recorded answers (list, best first) or {"error": message},
    after checking that `models` and the cases are what the answers were recorded on."""
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    assert recorded["transformers"] == TRANSFORMERS, recorded["transformers"]
    for name, folder in models.items():
        now, then = model_fingerprint(folder), recorded["models"][name]
        assert now == then, (
            f"the tiny {name} QA model built now is not the one the reference answers in "
            f"{RECORDED.name} were recorded on (fingerprint {now[:12]}, recorded {then[:12]}): "
            f"tests/tiny_question_answering.py, its seed, torch or tokenizers changed its "
            f"weights or vocabulary. If that change is meant, re-record: {RERECORD}")
    assert set(recorded["runs"]) == set(RUNS), "cases added or removed: re-record: " + RERECORD
    for name, (model, options, rows) in RUNS.items():
        assert recorded["runs"][name]["case"] == case_fingerprint(model, options, rows), (
            f"case {name!r} (its rows or options) changed since it was recorded: {RERECORD}")
    return {name: run["answers"] for name, run in recorded["runs"].items()}
