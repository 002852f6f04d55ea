"""How batches move inside Ray: readers, tokenize, inference engines, postprocess."""
from corpusmill.operators.light_workers import hide_torch_if_asked

hide_torch_if_asked()  # before anything here imports transformers (light_workers.py)
