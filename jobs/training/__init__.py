"""`corpusmill train`: the train spec, the training run and its report."""
