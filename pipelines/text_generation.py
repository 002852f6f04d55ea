"""text-generation: continue each prompt with a decoder-only language model (GPT-2, Llama,
SmolLM, ...).

Input columns:  text (string)        the prompt (or, with `chat: true`, the user message)
Output columns: generated_text string  the prompt followed by its continuation
                                       (`return_full_text`, default for plain prompts), or the
                                       continuation alone (`return_full_text: false`, and always
                                       in chat mode: the assistant's reply); cut before the
                                       first `stop` string
Semantics follow transformers' text-generation pipeline on one prompt at a time: the new tokens
are decoded with special tokens skipped and, for the full text, appended to the prompt text
as given. Rows are generated in left-padded batches; greedy and beam outputs equal per-row
`model.generate` with the same parameters. Sampling is batch-invariant: a row's sample depends
on `seed`, the row's id and the model only (see `pipelines/generation.py`), so reruns, other
batch sizes and other actor counts give the same text; it draws from the same distribution as
transformers' sampling (temperature, then top-k, then top-p) but not the same random numbers.
An empty prompt starts from the BOS token (as the pipeline does); a prompt that does not fit
the model's window with `max_new_tokens` is a row error unless `long_prompt: keep_end`.
"""
from __future__ import annotations

import copy
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from corpusmill.pipelines.base import TRUNCATED_FIELD, Encoded, ModelMismatch, Task, TaskOptions
from corpusmill.pipelines.generation import (
    GumbelSampler, PaddingAwareRepetitionPenalty, StopOnStrings, cut_at_stop,
    generated_lengths, pad_ragged,
)
from corpusmill.pipelines.outcomes import generated_text_facts, generated_text_panels
from corpusmill.pipelines.registry import register


class TextGenerationOptions(TaskOptions):
    max_new_tokens: int = Field(32, ge=1, description="Tokens generated at most per row.")
    do_sample: bool = Field(False, description="Sample (with temperature/top_k/top_p) instead "
                                               "of greedy or beam search.")
    temperature: float = Field(1.0, description="Sampling temperature (> 0); with do_sample.")
    top_k: int = Field(50, ge=0, description="Sample among the k likeliest tokens; 0: all. "
                                             "With do_sample (transformers' default 50).")
    top_p: float = Field(1.0, description="Nucleus sampling: the smallest set of tokens with "
                                          "this much probability, in (0, 1]; with do_sample.")
    repetition_penalty: float = Field(1.0, description="> 0; above 1 discourages tokens "
                                      "already in the prompt or output (CTRL).")
    num_beams: int = Field(1, ge=1, description="Beam search with this many beams (1: greedy "
                                                "or sampling); not with do_sample.")
    return_full_text: bool | None = Field(None, description="Prompt + continuation (true, the "
                                          "default for plain prompts) or the continuation "
                                          "only; chat mode always gives the reply only.")
    stop: list[str] = Field(default_factory=list, description="Output is cut before the first "
                            "occurrence of any of these strings (and generation of that row "
                            "ends there).")
    seed: int = Field(0, ge=0, description="Sampling seed; with the row id it fixes a row's "
                                           "sample whatever the batching.")
    chat: bool = Field(False, description="Wrap each text as a user message in the tokenizer's "
                                          "chat template (with a generation prompt).")
    system_prompt: str | None = Field(None, description="System message before each user "
                                                        "message; needs chat: true.")
    long_prompt: Literal["error", "keep_end"] = Field(
        "error", description="A prompt longer than the model's window minus max_new_tokens: a "
                             "row error, or keep its last tokens (transformers' 'hole').")

    @field_validator("temperature", "repetition_penalty")
    @classmethod
    def _positive(cls, value, info):
        if not value > 0:
            raise ValueError(f"`{info.field_name}` must be > 0, got {value}")
        return value

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, value):
        if not 0 < value <= 1:
            raise ValueError(f"`top_p` must be in (0, 1], got {value}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        if any(not s for s in value):
            raise ValueError("`stop` strings must be non-empty")
        return value

    @model_validator(mode="after")
    def _combinations(self):
        if self.do_sample and self.num_beams > 1:
            raise ValueError(f"`do_sample` with `num_beams` > 1 (beam sampling) is not "
                             f"supported, got num_beams={self.num_beams}; use one or the other")
        if self.system_prompt is not None and not self.chat:
            raise ValueError("`system_prompt` needs `chat: true`")
        if self.chat and self.return_full_text:
            raise ValueError("`return_full_text: true` is for plain prompts; chat mode returns "
                             "the assistant's reply")
        return self

    @property
    def full_text(self) -> bool:
        return (not self.chat) if self.return_full_text is None else self.return_full_text


def encode_prompts(tokenizer, texts: list[str], options: TextGenerationOptions,
                   max_length: int) -> Encoded:
    """Token ids of each prompt (chat template applied in chat mode), one window per row."""
    room = max_length - options.max_new_tokens  # prompt tokens that fit the window
    if options.chat:
        if not getattr(tokenizer, "chat_template", None):
            message = ("chat: true but the model's tokenizer has no chat template; use "
                       "chat: false, or a chat (instruct) model")
            return Encoded(windows=[[[]] for _ in texts], errors=[message] * len(texts))
        prompts = [chat_prompt_ids(tokenizer, text, options.system_prompt) for text in texts]
    else:
        prompts = tokenizer(texts)["input_ids"]
    windows, errors, truncated = [], [], []
    for ids in prompts:
        ids, error, cut = fit_prompt(list(ids), room, tokenizer.bos_token_id, options)
        windows.append([ids])
        errors.append(error)
        truncated.append(cut)
    return Encoded(windows=windows, errors=errors, truncated=truncated)


def chat_prompt_ids(tokenizer, text: str, system_prompt: str | None) -> list[int]:
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages.append({"role": "user", "content": text})
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        return_dict=True)
    return list(out["input_ids"])


def fit_prompt(ids: list[int], room: int, bos_id: int | None,
               options: TextGenerationOptions) -> tuple[list[int], str | None, bool]:
    """(ids, error, truncated) for one prompt: empty prompts start from BOS; long ones are an
    error or keep their end."""
    if room < 1:
        return ids, (f"max_new_tokens={options.max_new_tokens} leaves no room for a prompt in "
                     f"the model's {room + options.max_new_tokens}-token window; lower "
                     f"max_new_tokens"), False
    if not ids:
        if bos_id is None:
            return ids, ("the prompt is empty and the tokenizer has no BOS token to start "
                         "from"), False
        return [int(bos_id)], None, False
    if len(ids) > room:
        if options.long_prompt == "keep_end":
            return ids[-room:], None, True
        return ids, (f"the prompt has {len(ids)} tokens; with max_new_tokens="
                     f"{options.max_new_tokens} at most {room} fit the model's window; "
                     f"shorten it, lower max_new_tokens, or set long_prompt: keep_end"), False
    return ids, None, False


class TextGeneration(Task):
    name = "text-generation"
    summary = "Continue each prompt with a decoder-only language model (GPT-2, Llama, SmolLM)."
    input_columns = ("text",)
    Options = TextGenerationOptions
    padding_side: ClassVar[str] = "left"
    uses_row_keys: ClassVar[bool] = True

    def output_fields(self):
        return [pa.field("generated_text", pa.string()), TRUNCATED_FIELD]

    def check_model(self, config, options):
        architectures = getattr(config, "architectures", None) or []
        causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
        if getattr(config, "is_encoder_decoder", False) or not causal:
            found = ", ".join(architectures) or f"a bare {config.model_type} model"
            raise ModelMismatch(
                f"text-generation needs a decoder-only checkpoint with a language-model head "
                f"(config.architectures ending in 'ForCausalLM' or 'LMHeadModel'); this one is "
                f"{found}. Encoder-decoder models (T5, BART, Marian) take the summarization, "
                f"translation or text2text-generation tasks.")

    def model_class(self):
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM

    def window_cost(self, length: int, options: TextGenerationOptions) -> int:
        # the batch grows to prompt + new tokens, for every beam
        return (length + options.max_new_tokens) * options.num_beams

    def prepare(self, model, tokenizer, options, model_ref, revision):
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        eos_ids = [] if eos is None else ([int(eos)] if isinstance(eos, int) else
                                          [int(e) for e in eos])
        return {"tokenizer": tokenizer, "eos_ids": eos_ids}

    def encode(self, tokenizer, texts, options, max_length):
        return encode_prompts(tokenizer, texts["text"], options, max_length)

    def forward(self, model, tensors, state, options, row_keys=None):
        from transformers import (
            LogitsProcessorList, StoppingCriteriaList, TemperatureLogitsWarper,
            TopKLogitsWarper, TopPLogitsWarper,
        )

        input_ids, mask = tensors["input_ids"], tensors["attention_mask"]  # (batch, seq), left-padded
        batch, prompt_length = input_ids.shape
        processors = LogitsProcessorList()
        if options.repetition_penalty != 1.0:
            pad_lengths = (prompt_length - mask.sum(dim=1)).tolist()
            processors.append(PaddingAwareRepetitionPenalty(
                options.repetition_penalty, pad_lengths, options.num_beams))
        if options.do_sample:  # transformers' warper order, then a batch-invariant draw
            if options.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(options.temperature))
            if options.top_k:
                processors.append(TopKLogitsWarper(options.top_k))
            if options.top_p < 1.0:
                processors.append(TopPLogitsWarper(options.top_p))
            keys = row_keys if row_keys is not None else [str(i) for i in range(batch)]
            processors.append(GumbelSampler(options.seed, keys, prompt_length))
        stopping = StoppingCriteriaList()
        stop = None
        if options.stop and options.num_beams == 1:
            stop = StopOnStrings(options.stop, state["tokenizer"], prompt_length, batch)
            stopping.append(stop)
        config = generation_config(model, options)
        sequences = model.generate(input_ids=input_ids, attention_mask=mask,
                                   generation_config=config, logits_processor=processors,
                                   stopping_criteria=stopping)
        new = sequences[:, prompt_length:].cpu().numpy()  # (batch, steps)
        lengths = generated_lengths(new, state["eos_ids"],
                                    None if stop is None else stop.stopped_at)
        tokens = pad_ragged([row[:n] for row, n in zip(new, lengths)], new.shape[1])
        return {"tokens": tokens}  # (batch, steps), -1 after each row's end

    def decode(self, rows, options, config, tokenizer):
        texts = []
        for windows, prompt in zip(rows.outputs, rows.texts["text"]):
            tokens = windows[0]["tokens"]
            new_text = tokenizer.decode(tokens[tokens >= 0].tolist(), skip_special_tokens=True)
            new_text = cut_at_stop(new_text, options.stop)
            texts.append(prompt + new_text if options.full_text else new_text)
        return {"generated_text": texts}

    def report_facts(self, outputs):
        return generated_text_facts(outputs, "generated_text")

    def report_panels(self, options):
        return generated_text_panels("Generated text")


def generation_config(model, options: TextGenerationOptions):
    """The model's own generation config with our options: always greedy or beam inside
    `generate` (sampling happens in our logits processors), our processors replacing its
    temperature / top-k / top-p / repetition penalty."""
    config = copy.deepcopy(model.generation_config)
    config.do_sample = False
    config.num_beams = options.num_beams
    config.num_return_sequences = 1
    config.max_new_tokens = options.max_new_tokens
    config.max_length = None
    config.temperature = None
    config.top_k = None
    config.top_p = None
    config.repetition_penalty = None
    if config.pad_token_id is None:  # what fills finished rows; cut off before decode
        eos = config.eos_token_id
        config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return config


register(TextGeneration())
