"""text-generation through the operator chain (tokenize -> infer -> postprocess, no Ray) on tiny
random GPT-2 (byte-level BPE, no pad token) and Llama (Metaspace BPE, BOS, pad token) models.

Greedy and beam outputs equal transformers' text-generation pipeline run one prompt at a time
(i.e. per-row `model.generate`) with the same parameters, over 120 varied rows each, batched
with left padding into many micro-batches of mixed lengths. Sampled outputs are the same
whatever the batch sizes and however the blocks are dealt to actors."""
from __future__ import annotations


import pyarrow as pa
import pytest
from transformers import pipeline

from corpusmill.operators.infer import Infer
from corpusmill.operators.postprocess import postprocess_batch
from corpusmill.operators.readers.read import CorpusDatasource
from corpusmill.operators.tokenize import tokenize_batch
from corpusmill.pipelines.generation import cut_at_stop
from tests import tiny_generation
from tests.corpora import job_plan, rows_in_input_order, run_operators, varied_texts

# prompts of up to ~300 characters (two far longer ones stay: they do not fit the window)
TEXTS = [t if len(t) < 300 or len(t) > 5000 else t[:300] for t in varied_texts(120, seed=5)]
NEW = 12
SMALL_BATCHES = {"max_tokens": 160, "window_rows": 32}  # many micro-batches, mixed padding


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen-models")
    return {"gpt2": tiny_generation.build_gpt2(root / "gpt2"),
            "llama": tiny_generation.build_llama(root / "llama")}


def make_plan(tmp_path, model, batching, texts=TEXTS, **options):
    return job_plan(tmp_path, "text-generation", model, {"text": texts}, options=options,
                    batching=batching, torch_threads=2)


def run_ours(tmp_path, model, batching=SMALL_BATCHES, texts=TEXTS, **options):
    plan, corpus = make_plan(tmp_path, model, batching, texts, **options)
    return rows_in_input_order(run_operators(plan, corpus), len(texts))


def run_two_actors(tmp_path, model, batching, **options):
    """As Ray deals blocks to a pool of two actors: each block goes to one of two Infers."""
    plan, corpus = make_plan(tmp_path, model, batching, **options)
    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema, plan.spec.id_column,
                              rows_per_block=plan.spec.batching.window_rows)
    actors, parts, k = [Infer(plan), Infer(plan)], [], 0
    for task in source.get_read_tasks(1):
        for block in task.read_fn():
            parts.append(postprocess_batch(actors[k % 2](tokenize_batch(block, plan)), plan))
            k += 1
    assert k >= 2, "both actors must get work"
    return rows_in_input_order(pa.concat_tables(parts), len(TEXTS))


def reference_outputs(model, texts, *, long_prompt="error", **generate):
    """transformers' pipeline, one prompt at a time; None where the prompt cannot fit."""
    generator = pipeline("text-generation", model=model)
    limit = generator.tokenizer.model_max_length - NEW
    out = []
    for text in texts:
        n = len(generator.tokenizer(text)["input_ids"])
        if n > limit and long_prompt == "error":
            out.append(None)
            continue
        hole = {"handle_long_generation": "hole"} if n > limit else {}
        new = generator(text, max_new_tokens=NEW, return_full_text=False, **hole,
                        **generate)[0]["generated_text"]
        out.append(new)
    return out


def assert_parity(ours, expected, full_text=True):
    generated = 0
    for text, row, want in zip(TEXTS, ours, expected):
        if want is None:
            assert row["generated_text"] is None and "max_new_tokens" in row["error"], text[:60]
            continue
        assert row["error"] is None, (text[:60], row["error"])
        assert row["generated_text"] == (text + want if full_text else want), text[:60]
        generated += 1
    assert generated >= 100
    assert len({row["generated_text"] for row in ours}) >= 50, "outputs must vary"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_matches_per_row_generate(tmp_path, models, arch):
    expected = reference_outputs(models[arch], TEXTS, do_sample=False)
    assert_parity(run_ours(tmp_path, models[arch], max_new_tokens=NEW), expected)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_beam_search_with_repetition_penalty_matches_per_row_generate(tmp_path, models, arch):
    expected = reference_outputs(models[arch], TEXTS, do_sample=False, num_beams=3,
                                 repetition_penalty=1.3)
    ours = run_ours(tmp_path, models[arch], max_new_tokens=NEW, num_beams=3,
                    repetition_penalty=1.3, return_full_text=False)
    assert_parity(ours, expected, full_text=False)


def test_greedy_repetition_penalty_stop_strings_and_long_prompts(tmp_path, models):
    # gpt2 pads with its EOS token: transformers' own penalty would penalise it in padded rows
    stop = ["e", "ar"]
    uncut = reference_outputs(models["gpt2"], TEXTS, long_prompt="keep_end", do_sample=False,
                              repetition_penalty=1.5)
    expected = [cut_at_stop(text, stop) for text in uncut]
    assert sum(a != b for a, b in zip(uncut, expected)) >= 20, "stop strings must cut rows"
    ours = run_ours(tmp_path, models["gpt2"], max_new_tokens=NEW, repetition_penalty=1.5,
                    stop=stop, long_prompt="keep_end", return_full_text=False)
    assert_parity(ours, expected, full_text=False)
    assert not any(s in row["generated_text"] for row in ours for s in stop)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_sampling_is_the_same_whatever_the_batching_and_actors(tmp_path, models, arch):
    options = {"max_new_tokens": NEW, "do_sample": True, "temperature": 0.9, "top_k": 40,
               "top_p": 0.95, "seed": 7}
    small = run_ours(tmp_path / "a", models[arch], SMALL_BATCHES, **options)
    large = run_ours(tmp_path / "b", models[arch], {"max_tokens": 8192, "window_rows": 120},
                     **options)
    actors = run_two_actors(tmp_path / "c", models[arch], {"max_tokens": 600, "window_rows": 20},
                            **options)
    texts = [row["generated_text"] for row in small]
    assert sum(t is not None for t in texts) >= 100
    assert [row["generated_text"] for row in large] == texts
    assert [row["generated_text"] for row in actors] == texts
    greedy = run_ours(tmp_path / "d", models[arch], max_new_tokens=NEW)
    reseeded = run_ours(tmp_path / "e", models[arch], **{**options, "seed": 8})
    differs = lambda other: sum(a["generated_text"] != b for a, b in zip(other, texts))  # noqa: E731
    assert differs(greedy) >= 50 and differs(reseeded) >= 50


def test_chat_mode_applies_the_template_and_returns_the_reply(tmp_path, models):
    texts = TEXTS[:20]
    ours = run_ours(tmp_path, models["llama"], texts=texts, max_new_tokens=NEW, chat=True,
                    system_prompt="be brief")
    generator = pipeline("text-generation", model=models["llama"])
    for text, row in zip(texts, ours):
        chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
        reply = generator(chat, max_new_tokens=NEW, do_sample=False)[0]["generated_text"][-1]
        assert reply["role"] == "assistant"
        assert row["error"] is None and row["generated_text"] == reply["content"]


def test_chat_without_a_template_is_a_row_error(tmp_path, models):
    ours = run_ours(tmp_path, models["gpt2"], texts=TEXTS[:5], chat=True)
    assert all(r["generated_text"] is None and "no chat template" in r["error"] for r in ours)
