"""Token-budget micro-batching: every row exactly once, budget respected, little padding."""
import numpy as np
import pytest

from corpusmill.operators.batching import pad, plan_microbatches


@pytest.mark.parametrize("seed", range(5))
def test_every_row_once_and_budget_respected(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(3.5, 1.0, size=500).astype(int) + 2
    batches = plan_microbatches(lengths, max_tokens=2048)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for batch in batches:
        padded = len(batch) * lengths[batch].max()
        assert padded <= 2048 or len(batch) == 1


def test_sorting_keeps_padding_low():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(3.5, 1.0, size=1000).astype(int) + 2
    batches = plan_microbatches(lengths, max_tokens=4096)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert lengths.sum() / padded > 0.85


def test_row_longer_than_budget_goes_alone():
    assert [b.tolist() for b in plan_microbatches([5, 100, 5], max_tokens=50)] == [[0, 2], [1]]


def test_empty_window():
    assert plan_microbatches([], max_tokens=100) == []


def test_pad_right_with_mask():
    ids, mask = pad([[1, 2, 3], [4]], pad_value=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
