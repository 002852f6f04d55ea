"""Training inside Ray's reach: examples streamed from the corpus, transformers' Trainer."""
