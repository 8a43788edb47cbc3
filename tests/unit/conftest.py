"""Fixtures shared by the unit tests."""
from __future__ import annotations

import pytest
import torch

from pipeline.encoders import TinyEncoder


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: OpenMP threads only add barrier waits (100x slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    """The tiny random CLIP (seeded, deterministic)."""
    return TinyEncoder(seed=0)
