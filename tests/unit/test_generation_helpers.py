"""Generation helpers without a model: per-row seeds, the Gumbel-max sampler (its draws follow
softmax of the scores), the padding-aware repetition penalty (equal to transformers' on the
unpadded row), stop strings, generated lengths, left padding, option validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import RepetitionPenaltyLogitsProcessor

from corpusmill.operators.batching import pad
from corpusmill.pipelines.generation import (
    GumbelSampler, PaddingAwareRepetitionPenalty, StopOnStrings, cut_at_stop,
    generated_lengths, gumbel_noise, pad_ragged, row_seed,
)
from corpusmill.pipelines.text_generation import TextGenerationOptions, fit_prompt


def test_row_seed_depends_on_seed_row_and_step_only():
    assert row_seed(1, "a.parquet:3", 0) == row_seed(1, "a.parquet:3", 0)
    seeds = {row_seed(s, k, t) for s in (0, 1) for k in ("a:1", "a:2") for t in (0, 1)}
    assert len(seeds) == 8
    assert 0 <= row_seed(2**40, "x" * 100, 10**6) < 2**63


def test_gumbel_max_draws_follow_the_softmax():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    counts = np.zeros(5)
    for step in range(4000):
        sampler = GumbelSampler(seed=3, row_keys=["row"], prompt_length=0)
        noisy = sampler(torch.zeros((1, step), dtype=torch.long), scores)
        counts[int(noisy.argmax())] += 1
    expected = torch.softmax(scores, dim=-1)[0].numpy()
    assert counts[4] == 0  # a token filtered to -inf is never drawn
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)


def test_gumbel_sampler_noise_is_per_row_not_per_batch():
    scores = torch.zeros((3, 7))
    batch = GumbelSampler(5, ["r0", "r1", "r2"], prompt_length=2)(torch.zeros((3, 4)), scores)
    alone = GumbelSampler(5, ["r1"], prompt_length=6)(torch.zeros((1, 8)), scores[:1])
    torch.testing.assert_close(batch[1], alone[0])  # same row, same step (2), other batch
    assert not torch.equal(batch[0], batch[1])
    assert torch.isfinite(gumbel_noise(0, 10_000)).all()


def test_repetition_penalty_ignores_left_padding():
    torch.manual_seed(0)
    scores = torch.randn(2, 10)
    pad_id = 9  # row 0 is padded with a token it never uses itself
    padded = torch.tensor([[pad_id, pad_id, 1, 2], [3, 4, 4, 5]])
    ours = PaddingAwareRepetitionPenalty(1.7, pad_lengths=[2, 0])(padded, scores.clone())
    reference = RepetitionPenaltyLogitsProcessor(1.7)
    torch.testing.assert_close(ours[0], reference(torch.tensor([[1, 2]]), scores[:1].clone())[0])
    torch.testing.assert_close(ours[1], reference(padded[1:], scores[1:].clone())[0])
    assert ours[0, pad_id] == scores[0, pad_id]


def test_repetition_penalty_repeats_pad_lengths_per_beam():
    processor = PaddingAwareRepetitionPenalty(2.0, pad_lengths=[1, 0], num_beams=2)
    assert processor.pad_lengths == [1, 1, 0, 0]


def test_cut_at_stop_is_exclusive_and_takes_the_earliest():
    assert cut_at_stop("hello world. bye\n", ["\n", "."]) == "hello world"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"
    assert cut_at_stop("###start", ["###"]) == ""
    assert cut_at_stop("abc", []) == "abc"


class _Chars:
    """A tokenizer whose token i is chr(ord('a') + i)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("a") + i) for i in ids)


def test_stop_on_strings_records_the_step_each_row_stopped():
    stop = StopOnStrings(["cd"], _Chars(), prompt_length=1, batch=2)
    seqs = torch.tensor([[0, 2, 3, 0], [0, 1, 1, 1]])  # row 0 generates "c","d" -> stops at 2
    assert stop(seqs[:, :2], None).tolist() == [False, False]
    assert stop(seqs[:, :3], None).tolist() == [True, False]
    assert stop(seqs, None).tolist() == [True, False]
    assert stop.stopped_at == [2, None]


def test_generated_lengths_cut_after_eos_or_stop():
    new = np.array([[5, 6, 2, 2], [5, 6, 7, 8], [2, 0, 0, 0], [5, 9, 0, 0]])
    assert generated_lengths(new, [2, 9]).tolist() == [3, 4, 1, 2]
    assert generated_lengths(new, [2], stopped_at=[None, 2, None, None]).tolist() == [3, 2, 1, 4]
    assert generated_lengths(new, []).tolist() == [4, 4, 4, 4]
    assert pad_ragged([[1, 2], []], 3).tolist() == [[1, 2, -1], [-1, -1, -1]]


def test_left_padding_puts_every_sequence_at_the_end():
    ids, mask = pad([[1, 2, 3], [4]], pad_value=0, side="left")
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pad([[1, 2, 3], [4]], 0)[0].tolist() == [[1, 2, 3], [4, 0, 0]]
    with pytest.raises(ValueError, match="'right' or 'left'"):
        pad([[1]], 0, side="middle")


@pytest.mark.parametrize("options, message", [
    ({"top_p": 1.5}, "`top_p` must be in (0, 1], got 1.5"),
    ({"top_p": 0}, "`top_p` must be in (0, 1], got 0"),
    ({"temperature": 0}, "`temperature` must be > 0, got 0"),
    ({"repetition_penalty": -1}, "`repetition_penalty` must be > 0, got -1"),
    ({"stop": ["ok", ""]}, "`stop` strings must be non-empty"),
    ({"do_sample": True, "num_beams": 2}, "beam sampling"),
    ({"system_prompt": "hi"}, "`system_prompt` needs `chat: true`"),
    ({"chat": True, "return_full_text": True}, "chat mode returns the assistant's reply"),
    ({"max_new_tokens": 0}, "greater than or equal to 1"),
    ({"top_k": -1}, "greater than or equal to 0"),
    ({"max_tokens": 5}, "Extra inputs are not permitted"),
])
def test_invalid_options_are_refused_with_the_fix(options, message):
    with pytest.raises(ValidationError) as info:
        TextGenerationOptions(**options)
    assert message in str(info.value)


def test_return_full_text_defaults_to_true_for_prompts_and_false_for_chat():
    assert TextGenerationOptions().full_text
    assert not TextGenerationOptions(chat=True).full_text
    assert not TextGenerationOptions(return_full_text=False).full_text


def test_fit_prompt_errors_or_keeps_the_end():
    options = TextGenerationOptions(max_new_tokens=4)
    assert fit_prompt([1, 2, 3], 3, None, options) == ([1, 2, 3], None, False)
    ids, error, _ = fit_prompt([1, 2, 3, 4], 3, None, options)
    assert "has 4 tokens" in error and "long_prompt: keep_end" in error
    keep = TextGenerationOptions(max_new_tokens=4, long_prompt="keep_end")
    assert fit_prompt([1, 2, 3, 4], 3, None, keep) == ([2, 3, 4], None, True)
    assert fit_prompt([], 3, 7, options) == ([7], None, False)
    assert "no BOS token" in fit_prompt([], 3, None, options)[1]
    assert "lower max_new_tokens" in fit_prompt([1], 0, 7, options)[1]


def test_token_outputs_of_left_padded_windows_are_their_last_positions():
    from corpusmill.operators.raw_outputs import OutputCollector
    from corpusmill.operators.windows import Windows

    windows = Windows.from_lists([[[11, 12, 13]], [[21, 22, 23, 24, 25]]])
    for side in ("left", "right"):
        arrays = windows.pad(np.array([0, 1]), pad_id=0, side=side)
        mask = arrays["attention_mask"].astype(bool)  # (2, 5)
        per_token = arrays["input_ids"][..., None] * 10  # (batch, seq, 1): the token, tagged
        collector = OutputCollector(windows, frozenset({"per_token"}))
        collector.add(np.array([0, 1]), {"per_token": per_token}, mask)
        table_rows = collector._tokens("per_token")[:, 0].tolist()
        assert table_rows == [110, 120, 130, 210, 220, 230, 240, 250], side


def test_a_generation_window_costs_its_prompt_and_new_tokens_for_every_beam():
    from corpusmill.pipelines.registry import get_task

    task = get_task("text-generation")
    assert task.window_cost(10, TextGenerationOptions(max_new_tokens=6, num_beams=3)) == 48
    assert get_task("text-classification").window_cost(10, None) == 10
    assert task.padding_side == "left" and get_task("text-classification").padding_side == "right"
