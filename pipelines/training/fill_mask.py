"""Continued pretraining for fill-mask: masked language modelling on raw text, BERT's recipe as
transformers' `DataCollatorForLanguageModeling` applies it (15% of the non-special tokens
chosen; of those 80% become the mask token, 10% a random token, 10% stay), so the model adapts
to the corpus's vocabulary and style.

Fields:  text   string
A text longer than `max_length` tokens is split into consecutive windows (no token dropped).
Training masks afresh in every batch; validation masks each batch the same way at every
evaluation (seeded by its content), so validation losses compare. Metrics: the validation loss
(lower is better) and its perplexity."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pyarrow as pa
from pydantic import Field

from corpusmill.pipelines.base import ModelMismatch, TaskOptions
from corpusmill.pipelines.training.base import LENGTH, Examples, TrainingTask


class FillMaskTrainingOptions(TaskOptions):
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens chosen for "
                                   "prediction in each example.")


class SeededMasking:
    """Validation masking: each batch's random choices seeded by the batch's own tokens."""

    def __init__(self, collator, seed: int):
        self.collator, self.seed = collator, seed

    def __call__(self, examples):
        key = zlib.crc32(np.asarray(examples[0]["input_ids"], dtype=np.int32).tobytes())
        self.collator.generator = self.collator.get_generator(self.seed + key)
        return self.collator(examples)


class FillMaskTraining(TrainingTask):
    name = "fill-mask"
    summary = "continued masked-LM pretraining on raw text (15% masking)"
    field_sets = (("text",),)
    Options = FillMaskTrainingOptions
    metric = "loss"
    greater_is_better = False

    def check_types(self, types):
        if not (pa.types.is_string(types["text"]) or pa.types.is_large_string(types["text"])):
            raise ValueError(f"text must be a string column; it is {types['text']}")

    def check_base_model(self, config):
        if getattr(config, "is_encoder_decoder", False):
            raise ModelMismatch("fill-mask training needs an encoder with a masked-LM head "
                                "(BERT, RoBERTa, DistilBERT, ...), not an encoder-decoder")

    def model_class(self):
        from transformers import AutoModelForMaskedLM
        return AutoModelForMaskedLM

    def label_feature_types(self, labels):
        return {}

    def encode(self, tokenizer, rows, labels, options, config, max_length):
        if tokenizer.mask_token is None:
            raise ValueError("this tokenizer has no mask token; fill-mask training needs one "
                             "(BERT's [MASK], RoBERTa's <mask>)")
        enc = tokenizer(rows["text"], truncation=True, max_length=max_length,
                        return_overflowing_tokens=True, return_special_tokens_mask=True)
        columns = {name: enc[name] for name in ("input_ids", "token_type_ids",
                                                "special_tokens_mask") if name in enc}
        columns[LENGTH] = [len(ids) for ids in enc["input_ids"]]
        return Examples(columns, rows=list(enc["overflow_to_sample_mapping"]))

    def collators(self, tokenizer, model, options, seed):
        from transformers import DataCollatorForLanguageModeling

        def masking():
            return DataCollatorForLanguageModeling(
                tokenizer, mlm_probability=options.mlm_probability, seed=seed)

        return masking(), SeededMasking(masking(), seed)

    def derived_metrics(self, metrics):
        loss = metrics.get("loss")
        return {} if loss is None else {"perplexity": math.exp(min(loss, 50.0))}
