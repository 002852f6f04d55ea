"""summarization, translation, text2text-generation: encoder-decoder models (T5, BART, Marian,
mBART, ...) that read a text and generate another, by greedy or beam search.

transformers 5 removed these three pipelines; these tasks do what transformers 4.x's did:
    prefix + text  --tokenizer-->  input ids (truncated to the encoder window; flagged)
                   --model.generate(input_ids, attention_mask, **generation settings)-->
    generated ids  --tokenizer.decode(skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False)-->  text

Input columns:  text (string)
Output columns: summarization          summary_text      string
                translation            translation_text  string
                text2text-generation   generated_text    string

Generation settings, lowest precedence first: the model's generation config; the entry of the
config's `task_specific_params` for the task (`summarization`, `translation_{src}_to_{tgt}`,
`text2text-generation`), as 4.x's pipelines applied it; the job's options. Only greedy or beam
search runs (`do_sample` is always off, one sequence per text), so outputs are deterministic.
The prefix (T5's `summarize: `, `translate English to German: `) is the `prefix` option, else
the task entry's `prefix`, else `config.prefix`, else none.

Inputs longer than the encoder window (`batching.max_length`, default the tokenizer's
`model_max_length`) are cut to it, never silently: the row's `Encoded.truncated` is set. With
summarization's `long_input: chunk`, a long text is instead split at token boundaries into
windows that each fit (prefix included); each window is summarised, and then the window
summaries, joined in order with single spaces, are summarised once more on the same actor
(`combine_windows`; joins still longer than the window are chunked and summarised again).
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from corpusmill.pipelines.base import (
    TRUNCATED_FIELD, Encoded, EvaluateOptions, ModelMismatch, Task, TaskOptions,
)
from corpusmill.pipelines.metrics import rouge_metrics, translation_metrics
from corpusmill.pipelines.outcomes import (
    as_references, generated_text_facts, generated_text_panels, require_string_gold,
)
from corpusmill.pipelines.registry import register

# generation settings these tasks take, from task_specific_params and from options
GENERATION_KEYS = ("num_beams", "max_new_tokens", "max_length", "min_length", "length_penalty",
                   "no_repeat_ngram_size", "early_stopping")
# model types whose tokenizers translate between many languages and need src_lang/tgt_lang
MULTILINGUAL_TYPES = frozenset({"mbart", "m2m_100", "nllb_moe", "plbart", "seamless_m4t",
                                "seamless_m4t_v2"})


class GenerationOptions(TaskOptions):
    """Options shared by the three tasks. Unset (null) settings come from the model's
    `task_specific_params` entry for the task, else its generation config."""

    num_beams: int | None = Field(None, description="Beam width; 1 is greedy search.")
    max_new_tokens: int | None = Field(None, description="Most tokens to generate (the decoder "
                                       "start token not counted). Set this or max_length.")
    max_length: int | None = Field(None, description="Most tokens of the generated sequence, "
                                   "decoder start token included (transformers' max_length).")
    min_length: int | None = Field(None, description="Fewest tokens of the generated sequence "
                                   "before the end token may come.")
    length_penalty: float | None = Field(None, description="Beam search: exponent on the length "
                                         "that divides a beam's score; > 0 favours longer outputs.")
    no_repeat_ngram_size: int | None = Field(None, description="No n-gram of this size occurs "
                                             "twice in an output; 0 turns it off.")
    early_stopping: bool | Literal["never"] | None = Field(
        None, description="Beam search stops when num_beams finished candidates exist (true), by "
                          "a heuristic (false), or only when no better candidate can come (never).")
    prefix: str | None = Field(None, description="Text put before every input, e.g. 'summarize: "
                               "' for T5; default: the model config's prefix for the task; '' "
                               "for none.")

    @field_validator("num_beams", "max_new_tokens", "max_length")
    @classmethod
    def _at_least_one(cls, value, info):
        if value is not None and value < 1:
            raise ValueError(f"`{info.field_name}` must be >= 1, got {value}")
        return value

    @field_validator("min_length", "no_repeat_ngram_size")
    @classmethod
    def _not_negative(cls, value, info):
        if value is not None and value < 0:
            raise ValueError(f"`{info.field_name}` must be >= 0, got {value}")
        return value

    @field_validator("length_penalty")
    @classmethod
    def _finite(cls, value):
        if value is not None and not np.isfinite(value):
            raise ValueError(f"`length_penalty` must be a finite number, got {value}")
        return value

    @model_validator(mode="after")
    def _lengths_agree(self):
        if self.max_new_tokens is not None and self.max_length is not None:
            raise ValueError(f"set one of `max_new_tokens` ({self.max_new_tokens}) and "
                             f"`max_length` ({self.max_length}), not both")
        if (self.min_length is not None and self.max_length is not None
                and self.min_length > self.max_length):
            raise ValueError(f"`min_length` ({self.min_length}) must be <= `max_length` "
                             f"({self.max_length})")
        return self


class SummarizationOptions(GenerationOptions):
    long_input: Literal["truncate", "chunk"] = Field(
        "truncate", description="Texts longer than the encoder window: cut to it (truncate), or "
                                "split into windows whose summaries are joined in order (chunk).")


class LanguagePairOptions(TaskOptions):
    """The languages of a translation: shared by inference and training."""

    src_lang: str | None = Field(None, description="Source language: a language code of a "
                                 "multilingual tokenizer (en_XX, eng_Latn, ...), or the xx of a "
                                 "T5-style `translation_xx_to_yy` entry. Single-pair models "
                                 "(Marian) need none.")
    tgt_lang: str | None = Field(None, description="Target language, as src_lang.")

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.src_lang is None) != (self.tgt_lang is None):
            raise ValueError(f"set both `src_lang` and `tgt_lang` or neither, got "
                             f"src_lang={self.src_lang!r}, tgt_lang={self.tgt_lang!r}")
        return self


class TranslationOptions(LanguagePairOptions, GenerationOptions):
    pass


# ---- pure helpers ---------------------------------------------------------------------------

def task_entry(config: Any, key: str | None) -> dict:
    """The config's `task_specific_params[key]`, or {}."""
    params = getattr(config, "task_specific_params", None) or {}
    return dict(params.get(key) or {}) if key else {}


def resolve_prefix(config: Any, options: GenerationOptions, key: str | None) -> str:
    """The `prefix` option, else the task entry's prefix, else `config.prefix`, else ''."""
    if options.prefix is not None:
        return options.prefix
    entry = task_entry(config, key)
    if entry.get("prefix") is not None:
        return entry["prefix"]
    return getattr(config, "prefix", None) or ""


def generation_kwargs(config: Any, options: GenerationOptions, key: str | None) -> dict:
    """Keyword arguments for `generate`: the task entry's settings overridden by the options;
    what neither sets is left to the model's generation config. Always greedy/beam search."""
    entry = {k: v for k, v in task_entry(config, key).items() if k in GENERATION_KEYS}
    chosen = {k: getattr(options, k) for k in GENERATION_KEYS if getattr(options, k) is not None}
    if "max_new_tokens" in chosen:
        entry.pop("max_length", None)
    if "max_length" in chosen:
        entry.pop("max_new_tokens", None)
    return {**entry, **chosen, "do_sample": False, "num_return_sequences": 1}


def strip_padding(ids: np.ndarray, pad_id: int | None) -> np.ndarray:
    """A generated sequence without the pad ids that batching appended after it ends."""
    if pad_id is None:
        return ids
    end = len(ids)
    while end > 0 and ids[end - 1] == pad_id:
        end -= 1
    return ids[:end]


def decode_sequence(tokenizer: Any, sequence: np.ndarray) -> str:
    """Generated ids -> text, as transformers 4.x's pipelines decoded them."""
    return tokenizer.decode(strip_padding(sequence, tokenizer.pad_token_id).tolist(),
                            skip_special_tokens=True, clean_up_tokenization_spaces=False)


MAX_SUMMARY_ROUNDS = 8
SECOND_PASS_BATCH = 32  # texts per generate call in the second pass


def summarise_summaries(model: Any, tokenizer: Any, state: dict, max_length: int,
                        summaries: dict[int, list[str]], device: str) -> dict[int, np.ndarray]:
    """Per row, the generated ids (`sequences`) summarising its window summaries: joined, and
    while a join is longer than the encoder window, cut into windows and summarised again (at
    most MAX_SUMMARY_ROUNDS rounds; then it is truncated to the window). Every row's texts of
    a round go through `generate` together, in length-sorted batches."""
    prefix = state["prefix"]
    texts = {row: join_summaries(parts) for row, parts in summaries.items()}
    for _ in range(MAX_SUMMARY_ROUNDS):
        long_rows = [row for row, text in texts.items() if tokenizer.is_fast
                     and len(tokenizer(prefix + text)["input_ids"]) > max_length]
        if not long_rows:
            break
        pieces = {row: chunk_texts(tokenizer, texts[row], prefix, max_length)
                  for row in long_rows}
        flat = [prefix + p for row in long_rows for p in pieces[row]]
        generated = iter(_generate_many(model, tokenizer, state, max_length, flat, device))
        for row in long_rows:
            texts[row] = join_summaries([decode_sequence(tokenizer, next(generated))
                                         for _ in pieces[row]])
    rows = list(texts)
    final = _generate_many(model, tokenizer, state, max_length,
                           [prefix + texts[row] for row in rows], device)
    return dict(zip(rows, final))


def _generate_many(model: Any, tokenizer: Any, state: dict, max_length: int,
                   inputs: list[str], device: str) -> list[np.ndarray]:
    """Generated ids for each input, in input order, batched by similar length."""
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    out: list = [None] * len(inputs)
    for start in range(0, len(order), SECOND_PASS_BATCH):
        group = order[start:start + SECOND_PASS_BATCH]
        enc = tokenizer([inputs[i] for i in group], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        sequences = model.generate(**enc, **state["generate"]).cpu().numpy().astype(np.int32)
        for i, sequence in zip(group, sequences):
            out[i] = sequence
    return out


def join_summaries(summaries: list[str]) -> str:
    """One row's window summaries, in order; a single window's summary unchanged."""
    if len(summaries) == 1:
        return summaries[0]
    return " ".join(s.strip() for s in summaries if s.strip())


def chunk_texts(tokenizer: Any, text: str, prefix: str, max_length: int) -> list[str]:
    """Split `text` at token boundaries into consecutive pieces such that each
    `prefix + piece`, tokenized with special tokens, fits in `max_length` tokens. Needs a fast
    tokenizer (offsets)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [o for o in enc["offset_mapping"] if o[1] > o[0]]
    overhead = (len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
                + tokenizer.num_special_tokens_to_add())
    budget = max(1, max_length - overhead)
    pieces, start = [], 0
    while start < len(offsets):
        end = min(start + budget, len(offsets))
        while True:
            piece = text[offsets[start][0]:offsets[end - 1][1]].strip()
            if end - start == 1 or len(tokenizer(prefix + piece)["input_ids"]) <= max_length:
                break
            end -= 1  # re-tokenised at its edges the piece came out longer: shrink it
        pieces.append(piece)
        start = end
    return pieces or [text]


@functools.lru_cache(maxsize=4)
def _config_of(name_or_path: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name_or_path)


# ---- the tasks ------------------------------------------------------------------------------

class ReferenceEvaluateOptions(EvaluateOptions):
    use_stemmer: bool = Field(False, description="ROUGE: Porter-stem words before matching "
                              "(rouge-score's option; off by default, as there).")


class TranslationEvaluateOptions(EvaluateOptions):
    tokenize: Literal["13a", "intl", "zh", "char", "none"] = Field(
        "13a", description="sacreBLEU's tokenizer for BLEU (13a, its default, for most "
                           "languages; zh for Chinese; char for character-level).")


class Seq2SeqTask(Task):
    """What the three tasks share; subclasses name the output column and the config entry."""

    input_columns = ("text",)
    output_column: ClassVar[str]

    def output_fields(self):
        return [pa.field(self.output_column, pa.string()), TRUNCATED_FIELD]

    def task_key(self, config: Any, options: GenerationOptions) -> str | None:
        """The key of `config.task_specific_params` that applies."""
        return self.name

    def check_model(self, config, options):
        from transformers import AutoModelForSeq2SeqLM

        if (not getattr(config, "is_encoder_decoder", False)
                or type(config) not in AutoModelForSeq2SeqLM._model_mapping):
            found = ", ".join(getattr(config, "architectures", None) or []) or config.model_type
            raise ModelMismatch(
                f"{self.name} needs an encoder-decoder model with a generation head (T5, BART, "
                f"Marian, mBART, Pegasus, ...: AutoModelForSeq2SeqLM); this one is {found}. "
                f"For a decoder-only model (GPT-2, Llama, ...) use task 'text-generation'.")
        limit = getattr(config, "max_position_embeddings", None)
        wanted = options.max_length or (options.max_new_tokens and options.max_new_tokens + 1)
        if limit and wanted and wanted > limit:
            raise ModelMismatch(f"options ask for outputs of up to {wanted} tokens but the model's "
                                f"decoder has {limit} positions; lower max_new_tokens/max_length")

    def model_class(self):
        from transformers import AutoModelForSeq2SeqLM
        return AutoModelForSeq2SeqLM

    def prepare(self, model, tokenizer, options, model_ref, revision):
        key = self.task_key(model.config, options)
        return {"generate": generation_kwargs(model.config, options, key),
                "prefix": resolve_prefix(model.config, options, key)}

    def encode(self, tokenizer, texts, options, max_length):
        config = _config_of(tokenizer.name_or_path)
        prefix = resolve_prefix(config, options, self.task_key(config, options))
        inputs = [prefix + text for text in texts["text"]]
        full = tokenizer(inputs)["input_ids"]
        windows, truncated = [], []
        errors: list[str | None] = [None] * len(inputs)
        for i, ids in enumerate(full):
            if len(ids) <= max_length:
                windows.append([ids])
                truncated.append(False)
            elif self._chunks(options):
                if not tokenizer.is_fast:
                    errors[i] = (f"text of {len(ids)} tokens exceeds the encoder window of "
                                 f"{max_length}; long_input: chunk needs a fast tokenizer "
                                 f"(tokenizer.json) to split it; use long_input: truncate")
                    windows.append([])
                    truncated.append(False)
                    continue
                pieces = chunk_texts(tokenizer, texts["text"][i], prefix, max_length)
                windows.append([tokenizer(prefix + p, truncation=True,
                                          max_length=max_length)["input_ids"] for p in pieces])
                truncated.append(False)
            else:
                windows.append([tokenizer(inputs[i], truncation=True,
                                          max_length=max_length)["input_ids"]])
                truncated.append(True)
        return Encoded(windows=windows, errors=errors, truncated=truncated)

    def _chunks(self, options) -> bool:
        return False

    def forward(self, model, tensors, state, options):
        sequences = model.generate(input_ids=tensors["input_ids"],
                                   attention_mask=tensors["attention_mask"],
                                   **state["generate"])  # (batch, generated)
        return {"sequences": sequences.cpu().numpy().astype(np.int32)}

    def combine_windows(self, model, tokenizer, state, options, max_length, outputs, device):
        """`long_input: chunk`: a row of several windows gets one more pass, the summary of its
        windows' joined summaries (chunked again while that is still longer than the window)."""
        if not self._chunks(options):
            return outputs
        combined = {row: windows for row, windows in outputs.items() if len(windows) == 1}
        long_rows = {row: [decode_sequence(tokenizer, w["sequences"]) for w in windows]
                     for row, windows in outputs.items() if len(windows) > 1}
        if not long_rows:
            return combined
        try:
            together = summarise_summaries(model, tokenizer, state, max_length, long_rows, device)
        except Exception:  # noqa: BLE001 - narrowed to the failing rows below
            together = {}
            for row, summaries in long_rows.items():
                try:
                    together.update(summarise_summaries(model, tokenizer, state, max_length,
                                                        {row: summaries}, device))
                except Exception as e:  # noqa: BLE001 - the row fails, not its block
                    combined[row] = (f"summarising the {len(summaries)} window summaries of "
                                     f"a long text failed: {type(e).__name__}: {e}")
        for row, sequence in together.items():
            combined[row] = [{"sequences": sequence}]
        return combined

    def decode(self, rows, options, config, tokenizer):
        texts = []
        for windows in rows.outputs:
            outputs = [decode_sequence(tokenizer, w["sequences"]) for w in windows]
            texts.append(join_summaries(outputs))
        return {self.output_column: texts}

    # gold: the reference text, or a list of references
    Evaluate = ReferenceEvaluateOptions

    def report_facts(self, outputs):
        return generated_text_facts(outputs, self.output_column)

    def report_panels(self, options):
        return generated_text_panels(self.output_column.removesuffix("_text").capitalize())

    def check_gold(self, gold, evaluate, options):
        require_string_gold(gold, self.name, lists=True)

    def evaluate(self, rows, evaluate, options):
        """ROUGE-1/2/L (rouge-score) against the reference(s)."""
        return rouge_metrics(rows.outputs[self.output_column],
                             [as_references(g) for g in rows.gold], evaluate.use_stemmer)


class Summarization(Seq2SeqTask):
    name = "summarization"
    summary = "Summarise each text with an encoder-decoder model (BART, T5, Pegasus, ...)."
    Options = SummarizationOptions
    output_column = "summary_text"

    def _chunks(self, options) -> bool:
        return options.long_input == "chunk"


class Translation(Seq2SeqTask):
    name = "translation"
    summary = "Translate each text with an encoder-decoder model (Marian, T5, mBART, NLLB, ...)."
    Options = TranslationOptions
    output_column = "translation_text"
    Evaluate = TranslationEvaluateOptions

    def evaluate(self, rows, evaluate, options):
        """Corpus sacreBLEU and chrF (sacrebleu) against the reference translation(s)."""
        return translation_metrics(rows.outputs[self.output_column],
                                   [as_references(g) for g in rows.gold], evaluate.tokenize)

    def task_key(self, config, options):
        keys = [k for k in (getattr(config, "task_specific_params", None) or {})
                if k.startswith("translation")]
        if options.src_lang is not None:
            return f"translation_{options.src_lang}_to_{options.tgt_lang}"
        return keys[0] if len(keys) == 1 else None

    def check_model(self, config, options):
        super().check_model(config, options)
        keys = sorted(k for k in (getattr(config, "task_specific_params", None) or {})
                      if k.startswith("translation"))
        pairs = ", ".join(f"{k.split('_')[1]} -> {k.split('_')[3]}" for k in keys
                          if len(k.split("_")) == 4)
        if config.model_type in MULTILINGUAL_TYPES:
            if options.src_lang is None:
                raise ModelMismatch(
                    f"this {config.model_type} model translates between many languages: set "
                    f"options src_lang and tgt_lang to language codes of its tokenizer (e.g. "
                    f"en_XX and de_DE for mBART-50, en and de for M2M100, eng_Latn and "
                    f"deu_Latn for NLLB)")
        elif options.src_lang is None:
            if len(keys) > 1 and options.prefix is None:
                raise ModelMismatch(f"this model translates several language pairs ({pairs}): "
                                    f"choose one with options src_lang and tgt_lang")
        elif f"translation_{options.src_lang}_to_{options.tgt_lang}" not in keys:
            if keys:
                raise ModelMismatch(
                    f"this model's config knows no translation {options.src_lang} -> "
                    f"{options.tgt_lang}; its pairs: {pairs}. Or give the prefix it needs with "
                    f"options.prefix")
            raise ModelMismatch(
                f"this model translates one fixed language pair and takes no src_lang/tgt_lang "
                f"(got {options.src_lang} -> {options.tgt_lang}); leave them out")

    def prepare(self, model, tokenizer, options, model_ref, revision):
        state = super().prepare(model, tokenizer, options, model_ref, revision)
        if _multilingual(tokenizer) and options.tgt_lang is not None:
            lang_id = (tokenizer.get_lang_id(options.tgt_lang) if hasattr(tokenizer, "get_lang_id")
                       else tokenizer.convert_tokens_to_ids(options.tgt_lang))
            if lang_id is None or lang_id == tokenizer.unk_token_id:
                raise ValueError(f"tgt_lang {options.tgt_lang!r} is not a language code of this "
                                 f"tokenizer ({type(tokenizer).__name__})")
            state["generate"]["forced_bos_token_id"] = lang_id
        return state

    def encode(self, tokenizer, texts, options, max_length):
        if not _multilingual(tokenizer):
            return super().encode(tokenizer, texts, options, max_length)
        # as 4.x's _build_translation_inputs: the source language set on the tokenizer (which
        # adds its language token), no prefix; the target language is forced in generate
        if options.src_lang is None:
            message = ("this tokenizer translates between many languages: set options src_lang "
                       "and tgt_lang")
            return Encoded(windows=[[] for _ in texts["text"]],
                           errors=[message] * len(texts["text"]))
        tokenizer.src_lang = options.src_lang
        full = tokenizer(texts["text"])["input_ids"]
        windows, truncated = [], []
        for text, ids in zip(texts["text"], full):
            if len(ids) > max_length:
                ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            windows.append([ids])
            truncated.append(len(ids) < len(full[len(windows) - 1]))
        return Encoded(windows=windows, truncated=truncated)


class Text2TextGeneration(Seq2SeqTask):
    name = "text2text-generation"
    summary = "Generate a text from each text with an encoder-decoder model (T5, FLAN-T5, ...)."
    Options = GenerationOptions
    output_column = "generated_text"


def _multilingual(tokenizer) -> bool:
    """Tokenizers that take a source language (mBART, M2M100, NLLB, ...), as 4.x detected them."""
    return getattr(tokenizer, "_build_translation_inputs", None) is not None


register(Summarization())
register(Translation())
register(Text2TextGeneration())
