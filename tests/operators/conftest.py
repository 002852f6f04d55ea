"""The operator tests run tiny models in this process, one torch thread each."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second torch thread, and on a busy 2-core machine its
    spin-waits made these tests ten times slower (measured: 11 s against 0.9 s for 60 rows)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
