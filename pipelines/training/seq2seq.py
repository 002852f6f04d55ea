"""Training summarization, translation and text2text-generation: an encoder-decoder (T5, BART,
Marian, ...) learns to generate `target` from `text`, with the cross-entropy of the target's
tokens (teacher forcing).

Fields:  text    string   the input
         target  string   what the model should generate
Prefix:  T5-style task prefixes go before every input: `options.prefix`, else the base config's
         entry for the task (t5's `summarize: `, `translate English to German: ` with
         src_lang/tgt_lang `en`/`de`), else none, exactly as inference resolves it. The trained
         config records the prefix in that entry (or `config.prefix`), so `corpusmill run` with
         the trained folder adds the same prefix by itself.
Inputs longer than `max_length` tokens and targets longer than `max_target_length` are cut
(counted in the report). Metric: the validation loss (lower is better) at each evaluation; at
the end the kept model generates (greedy) for up to `score_rows` validation rows, scored with
ROUGE (summarization, text2text-generation) or sacreBLEU and chrF (translation)."""
from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from corpusmill.pipelines.base import ModelMismatch, TaskOptions
from corpusmill.pipelines.registry import get_task
from corpusmill.pipelines.seq2seq import (
    GenerationOptions, LanguagePairOptions, TranslationOptions, _multilingual, resolve_prefix,
)
from corpusmill.pipelines.training.base import LENGTH, Examples, TrainingTask, first_windows
from corpusmill.pipelines.training.scores import generation_scores

GENERATE_BATCH = 16


class Seq2SeqTrainingOptions(TaskOptions):
    prefix: str | None = Field(None, description="Text before every input (T5: 'summarize: '); "
                               "default: the base config's prefix for the task; '' for none.")
    max_target_length: int = Field(128, ge=2, description="Target tokens kept (longer targets "
                                   "are cut); also the most tokens generated when scoring.")
    score_rows: int = Field(200, ge=0, description="Validation rows the trained model generates "
                            "for at the end, scored with ROUGE or BLEU; 0: none.")


class TranslationTrainingOptions(LanguagePairOptions, Seq2SeqTrainingOptions):
    pass


class Seq2SeqTraining(TrainingTask):
    field_sets = (("text", "target"),)
    Options = Seq2SeqTrainingOptions
    metric = "loss"
    greater_is_better = False

    def __init__(self, name: str):
        self.name = name
        self.summary = f"an encoder-decoder for {name} (text -> target, T5 prefixes)"
        if name == "translation":
            self.Options = TranslationTrainingOptions

    def check_types(self, types):
        for name in ("text", "target"):
            if not (pa.types.is_string(types[name]) or pa.types.is_large_string(types[name])):
                raise ValueError(f"{name} must be a string column; it is {types[name]}")

    def check_base_model(self, config):
        if not getattr(config, "is_encoder_decoder", False):
            found = ", ".join(getattr(config, "architectures", None) or []) or config.model_type
            raise ModelMismatch(f"{self.name} training needs an encoder-decoder base model (T5, "
                                f"BART, Marian, ...); this one is {found}")

    def model_class(self):
        from transformers import AutoModelForSeq2SeqLM
        return AutoModelForSeq2SeqLM

    def _inference(self, options):
        """The inference task and its options, which resolve the prefix the same way."""
        extra = ({"src_lang": options.src_lang, "tgt_lang": options.tgt_lang}
                 if self.name == "translation" else {})
        cls = TranslationOptions if self.name == "translation" else GenerationOptions
        return get_task(self.name), cls(prefix=options.prefix, **extra)

    def prefix(self, config, options) -> tuple[str, str | None]:
        """(prefix, the config entry it belongs to)."""
        task, inference = self._inference(options)
        key = task.task_key(config, inference)
        return resolve_prefix(config, inference, key), key

    def finish_config(self, config, labels, options):
        prefix, key = self.prefix(config, options)
        if key is None:
            key = (f"translation_{options.src_lang}_to_{options.tgt_lang}"
                   if getattr(options, "src_lang", None) else None)
        if key is None:
            config.prefix = prefix or None
            return
        params = dict(getattr(config, "task_specific_params", None) or {})
        params[key] = {**(params.get(key) or {}), "prefix": prefix}
        config.task_specific_params = params

    def label_feature_types(self, labels):
        return {"labels": pa.list_(pa.int32())}

    def encode(self, tokenizer, rows, labels, options, config, max_length):
        prefix, _ = self.prefix(config, options)
        if _multilingual(tokenizer) and getattr(options, "src_lang", None):
            tokenizer.src_lang, tokenizer.tgt_lang = options.src_lang, options.tgt_lang
            prefix = ""
        enc, truncated = first_windows(tokenizer, [prefix + t for t in rows["text"]],
                                       max_length)
        targets = tokenizer(text_target=rows["target"], truncation=True,
                            max_length=options.max_target_length)["input_ids"]
        columns = {"input_ids": enc["input_ids"], "labels": targets,
                   LENGTH: [len(a) + len(b) for a, b in zip(enc["input_ids"], targets)]}
        return Examples(columns, rows=list(range(len(targets))), truncated=truncated)

    def generation_metrics(self, model, tokenizer, rows, options, max_length):
        import torch

        rows = rows.slice(0, options.score_rows).to_pydict()
        if not rows.get("text"):
            return {}
        prefix, _ = self.prefix(model.config, options)
        predictions = []
        model.eval()
        for start in range(0, len(rows["text"]), GENERATE_BATCH):
            texts = [prefix + t for t in rows["text"][start:start + GENERATE_BATCH]]
            enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(model.device)
            with torch.no_grad():
                out = model.generate(input_ids=enc["input_ids"],
                                     attention_mask=enc["attention_mask"], do_sample=False,
                                     num_beams=1, max_new_tokens=options.max_target_length)
            predictions += tokenizer.batch_decode(out, skip_special_tokens=True)
        scores = generation_scores(self.name, predictions, rows["target"])
        return {**scores, "scored_rows": len(predictions)}

    def collators(self, tokenizer, model, options, seed):
        from transformers import DataCollatorForSeq2Seq

        collator = DataCollatorForSeq2Seq(tokenizer, model=model)
        return collator, collator
