"""Quality metrics against gold: each equals the reference library's own output on the same
predictions; SQuAD follows the official v1.1 evaluation semantics."""
import random

import pytest

from corpusmill.pipelines import metrics
from corpusmill.pipelines.base import GoldRows
from corpusmill.pipelines.registry import get_task

LABELS = ["sports", "politics", "food", "travel"]


def _noisy_labels(n=200, seed=0):
    rng = random.Random(seed)
    gold = [rng.choice(LABELS) for _ in range(n)]
    predicted = [g if rng.random() < 0.6 else rng.choice(LABELS + ["science"]) for g in gold]
    return gold, predicted


def test_classification_equals_scikit_learn():
    from sklearn.metrics import (
        accuracy_score, classification_report, confusion_matrix, f1_score,
    )

    gold, predicted = _noisy_labels()
    got = metrics.classification_metrics(gold, predicted)
    assert got["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert got["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert got["micro_f1"] == pytest.approx(f1_score(gold, predicted, average="micro"))
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    labels = sorted(set(gold) | set(predicted))
    assert list(got["per_class"]) == labels  # "science" is predicted, never gold
    for label in labels:
        assert got["per_class"][label]["precision"] == pytest.approx(report[label]["precision"])
        assert got["per_class"][label]["recall"] == pytest.approx(report[label]["recall"])
        assert got["per_class"][label]["f1"] == pytest.approx(report[label]["f1-score"])
        assert got["per_class"][label]["support"] == report[label]["support"]
    matrix = got["confusion_matrix"]
    assert matrix["labels"] == labels
    assert matrix["matrix"] == confusion_matrix(gold, predicted, labels=labels).tolist()
    # rows are gold: row sums are each label's support
    assert [sum(r) for r in matrix["matrix"]] == [gold.count(label) for label in labels]


def test_zero_shot_scores_the_best_label_and_counts_gold_outside_candidates():
    task = get_task("zero-shot-classification")
    options = task.Options(candidate_labels=LABELS)
    gold, predicted = _noisy_labels(seed=1)
    gold[0] = "weather"  # not a candidate: never predictable
    rows = GoldRows(outputs={"labels": [[p, "x"] for p in predicted],
                             "scores": [[0.9, 0.1]] * len(gold)}, gold=gold)
    got = task.evaluate(rows, task.Evaluate(gold="topic"), options)
    assert got["accuracy"] == metrics.classification_metrics(gold, predicted)["accuracy"]
    assert got["gold_not_a_candidate"] == 1


# ------------------------------------------------------------------------- NER

def test_bio_tags_from_character_spans_and_token_labels():
    text = "Ada Lovelace met Charles Babbage in London ."
    spans = [(0, 12, "PER"), (17, 32, "PER"), (36, 42, "LOC")]
    assert metrics.bio_tags(text, spans) == [
        "B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]
    # aggregation `none`: token-level B-/I- labels, several tokens per word
    tokens = [(0, 2, "B-PER"), (2, 3, "I-PER"), (4, 12, "I-PER"), (36, 42, "B-LOC")]
    assert metrics.bio_tags(text, tokens) == [
        "B-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "O"]


def _ner_tags(seed, n=60):
    rng = random.Random(seed)
    gold, predicted = [], []
    for _ in range(n):
        tags, pred = [], []
        for _ in range(rng.randint(1, 12)):
            kind = rng.choice(["O", "O", "PER", "LOC", "ORG"])
            tag = "O" if kind == "O" else f"{rng.choice('BI')}-{kind}"
            tags.append(tag)
            pred.append(tag if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC"]))
        gold.append(tags)
        predicted.append(pred)
    return gold, predicted


def test_entity_metrics_equal_seqeval():
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    gold, predicted = _ner_tags(0)
    got = metrics.entity_metrics(gold, predicted)
    assert got["precision"] == pytest.approx(precision_score(gold, predicted))
    assert got["recall"] == pytest.approx(recall_score(gold, predicted))
    assert got["f1"] == pytest.approx(f1_score(gold, predicted))
    assert got["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    report = classification_report(gold, predicted, output_dict=True)
    for kind in ("PER", "LOC", "ORG"):
        assert got["per_type"][kind]["f1"] == pytest.approx(report[kind]["f1-score"])
        assert got["per_type"][kind]["support"] == report[kind]["support"]


@pytest.mark.parametrize("gold_format", ["bio", "spans"])
def test_ner_task_scores_entities_against_bio_or_span_gold(gold_format):
    from seqeval.metrics import f1_score

    task = get_task("token-classification")
    texts = ["Ada Lovelace met Charles Babbage in London .", "Paris is in France",
             "nothing here", "two words"]
    entities = [  # predictions: one person right, one person partly, London as ORG
        [{"entity": "PER", "start": 0, "end": 12}, {"entity": "PER", "start": 17, "end": 24},
         {"entity": "ORG", "start": 36, "end": 42}],
        [{"entity": "LOC", "start": 0, "end": 5}, {"entity": "LOC", "start": 12, "end": 18}],
        [], []]
    gold_spans = [[(0, 12, "PER"), (17, 32, "PER"), (36, 42, "LOC")],
                  [(0, 5, "LOC"), (12, 18, "LOC")], [], []]
    gold_bio = [metrics.bio_tags(t, s) for t, s in zip(texts, gold_spans)]
    gold_bio[3] = ["O"]  # one tag for two words: left out and counted
    gold = (gold_bio if gold_format == "bio" else
            [[{"start": s, "end": e, "label": k} for s, e, k in spans] for spans in gold_spans])
    rows = GoldRows(outputs={"entities": entities}, gold=gold, texts={"text": texts},
                    ids=["r1", "r2", "r3", "r4"])
    got = task.evaluate(rows, task.Evaluate(gold="g", gold_format=gold_format),
                        task.Options())
    scored = 3 if gold_format == "bio" else 4
    predicted_bio = [metrics.bio_tags(t, [(e["start"], e["end"], e["entity"]) for e in ents])
                     for t, ents in zip(texts, entities)][:scored]
    expected_gold = [metrics.bio_tags(t, s) for t, s in zip(texts, gold_spans)][:scored]
    assert got["f1"] == pytest.approx(f1_score(expected_gold, predicted_bio))
    assert got["f1"] == pytest.approx(2 * (3 / 5) * (3 / 5) / (6 / 5))  # 3 of 5 right, 5 gold
    assert got["rows_gold_mismatched"] == (1 if gold_format == "bio" else 0)
    if gold_format == "bio":
        assert got["gold_mismatched_examples"] == ["r4"]


# ------------------------------------------------------------------------- SQuAD v1.1

SQUAD_CASES = [  # (prediction, gold answers)
    ("Denver Broncos", ["Denver Broncos", "Broncos"]),
    ("the Denver Broncos!", ["Denver Broncos"]),          # article and punctuation removed
    ("Broncos of Denver", ["Denver Broncos"]),            # same tokens, other order: F1 1, EM 0
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara"]),  # best gold wins
    ("1976", ["1975"]),
    ("", ["Carolina Panthers"]),                          # no answer
    ("an   apple  pie", ["Apple pie", "pie"]),
    ("Gold Coast ", ["gold coast", "the Gold Coast"]),
    ("seven points", ["7 points"]),
]


def test_squad_equals_torchmetrics_on_the_same_answers():
    """torchmetrics' SQuAD is an independent implementation of the official script; where no
    answer normalises to nothing, v1.1 and it agree exactly."""
    from torchmetrics.functional.text import squad

    predictions = [p for p, _ in SQUAD_CASES]
    golds = [g for _, g in SQUAD_CASES]
    got = metrics.squad_metrics(predictions, golds)
    ref = squad([{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)],
                [{"answers": {"answer_start": [0] * len(g), "text": g}, "id": str(i)}
                 for i, g in enumerate(golds)])
    assert got["exact_match"] == pytest.approx(float(ref["exact_match"]), abs=1e-4)
    assert got["f1"] == pytest.approx(float(ref["f1"]), abs=1e-4)


def test_squad_v1_1_semantics():
    # normalisation: lower case, punctuation, articles, whitespace, in the script's order
    assert metrics.squad_normalize("The  Denver-Broncos, a team!") == "denverbroncos team"
    assert metrics.squad_normalize("theatre") == "theatre"  # whole words only
    assert metrics.squad_exact_match("THE Broncos.", "broncos") == 1.0
    # F1 is token overlap of the normalised answers, with repeated tokens counted once each
    assert metrics.squad_f1("Denver Broncos team", "Broncos") == pytest.approx(2 * (1 / 3) / (4 / 3))
    assert metrics.squad_f1("pie pie", "pie") == pytest.approx(2 * 0.5 / 1.5)
    # v1.1: when nothing is left to overlap, F1 is 0, even for two answers that normalise to
    # nothing (SQuAD 2.0's script, and torchmetrics, give 1 there); exact match is still 1
    assert metrics.squad_f1("the", "a") == 0.0
    assert metrics.squad_exact_match("the", "a") == 1.0
    got = metrics.squad_metrics(["Broncos", "x"], [["Denver Broncos", "Broncos"], ["y", "z"]])
    assert got == {"exact_match": 50.0, "f1": 50.0}  # percentages, max over gold answers


def test_qa_task_scores_a_missing_answer_as_empty():
    task = get_task("question-answering")
    rows = GoldRows(outputs={"answer": ["Broncos", None]}, gold=[["Denver Broncos"], "x"])
    got = task.evaluate(rows, task.Evaluate(gold="answers"), task.Options())
    assert got["exact_match"] == 0.0
    assert got["f1"] == pytest.approx(100 * (2 * 1 * 0.5 / 1.5) / 2)


# ------------------------------------------------------------------------- generated text

PREDICTIONS = ["the cat sat on the mat", "a quick brown fox", "rates rose sharply today",
               "hello world"]
REFERENCES = [["the cat is on the mat"], ["the quick brown fox jumps", "a fast brown fox"],
              ["rates rose today"], ["goodbye"]]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score(use_stemmer):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    got = metrics.rouge_metrics(PREDICTIONS, REFERENCES, use_stemmer=use_stemmer)
    for kind in ("rouge1", "rouge2", "rougeL"):
        expected = [scorer.score_multi(refs, p)[kind].fmeasure
                    for p, refs in zip(PREDICTIONS, REFERENCES)]
        assert got[kind] == pytest.approx(sum(expected) / len(expected))


def test_translation_equals_sacrebleu():
    import sacrebleu

    single = [refs[0] for refs in REFERENCES]
    got = metrics.translation_metrics(PREDICTIONS, [[r] for r in single])
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [single]).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [single]).score)
    assert got["bleu_signature"].startswith("nrefs:1|")
    # rows with different numbers of references: sacrebleu's streams, None where one has fewer
    got = metrics.translation_metrics(PREDICTIONS, REFERENCES)
    streams = [[r[0] for r in REFERENCES], [r[1] if len(r) > 1 else None for r in REFERENCES]]
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, streams).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, streams).score)


def test_seq2seq_tasks_score_their_own_output_column():
    rows = GoldRows(outputs={"summary_text": PREDICTIONS}, gold=[r[0] for r in REFERENCES])
    task = get_task("summarization")
    got = task.evaluate(rows, task.Evaluate(gold="ref"), task.Options())
    assert got["rouge1"] == metrics.rouge_metrics(PREDICTIONS, [[r[0]] for r in REFERENCES])["rouge1"]
    task = get_task("translation")
    rows = GoldRows(outputs={"translation_text": PREDICTIONS}, gold=REFERENCES)
    assert task.evaluate(rows, task.Evaluate(gold="ref"), task.Options())["bleu"] == (
        metrics.translation_metrics(PREDICTIONS, REFERENCES)["bleu"])


# ------------------------------------------------------------------------- fill-mask

def test_fill_mask_top1_and_top_k():
    from sklearn.metrics import accuracy_score

    ranked = [["paris", "lyon"], ["##ing", "ed"], ["Blue", "red"], ["one", "two"]]
    gold = ["Paris", "ing", "red", "three"]
    got = metrics.fill_mask_metrics(ranked, gold, k=2)
    assert got["top1_accuracy"] == accuracy_score(["paris", "ing", "red", "three"],
                                                  ["paris", "ing", "blue", "one"]) == 0.5
    assert got["top_k_accuracy"] == 0.75 and got["k"] == 2 and got["masks"] == 4


def test_fill_mask_task_counts_masks_and_mismatched_gold():
    task = get_task("fill-mask")

    def row(*masks):
        return [{"token_str": tok, "score": 0.1, "mask": m, "token": 0, "sequence": ""}
                for m, tokens in enumerate(masks) for tok in tokens]

    rows = GoldRows(outputs={"predictions": [row(["paris", "rome"]),
                                             row(["red", "blue"], ["cat", "dog"]),
                                             row(["x", "y"])]},
                    gold=["Rome", ["red", "dog"], ["a", "b"]], ids=[1, 2, 3])
    got = task.evaluate(rows, task.Evaluate(gold="answer"), task.Options(top_k=2))
    assert got["masks"] == 3 and got["rows_gold_mismatched"] == 1
    assert got["top1_accuracy"] == pytest.approx(1 / 3)
    assert got["top_k_accuracy"] == 1.0
    with pytest.raises(ValueError, match="at most 2"):
        import pyarrow as pa
        task.check_gold(pa.string(), task.Evaluate(gold="answer", k=3), task.Options(top_k=2))


def test_squad_sample_file_scores_equal_torchmetrics():
    """The shipped SQuAD-format file (hand-written questions, several answers each), scored for
    answers of every kind: a gold answer, one with an article and punctuation, a part of one,
    a wrong one, none."""
    import json
    from pathlib import Path

    from torchmetrics.functional.text import squad

    source = Path(__file__).parents[2] / "jobs/examples/data/source/squad_sample.json"
    qas = [qa for article in json.loads(source.read_text())["data"]
           for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    golds = [[a["text"] for a in qa["answers"]] for qa in qas]
    predictions = []
    for i, gold in enumerate(golds):
        words = gold[-1].split()
        predictions.append([gold[0], f"the {gold[-1]}.", " ".join(words[: max(1, len(words) // 2)]),
                            "a completely different answer", ""][i % 5])
    got = metrics.squad_metrics(predictions, golds)
    ref = squad([{"prediction_text": p, "id": qa["id"]} for p, qa in zip(predictions, qas)],
                [{"answers": {"answer_start": [a["answer_start"] for a in qa["answers"]],
                              "text": [a["text"] for a in qa["answers"]]}, "id": qa["id"]}
                 for qa in qas])
    assert len(qas) == 34
    assert got["exact_match"] == pytest.approx(float(ref["exact_match"]), abs=1e-4)
    assert got["f1"] == pytest.approx(float(ref["f1"]), abs=1e-4)
    assert 0 < got["exact_match"] < got["f1"] < 100
