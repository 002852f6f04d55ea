"""A tiny random BERT classifier (2 layers, width 32, the tests' fixture model), for benchmarks
where the model's compute should not dominate, e.g. memory scaling with corpus size.

    python bench/make_tiny_classifier.py out/models/tiny-classifier
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.tiny_models import build_bert_classifier  # noqa: E402

if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "out/models/tiny-classifier"
    print(build_bert_classifier(Path(folder), num_labels=2))
