"""Fixtures shared by the unit tests."""
from __future__ import annotations

import pytest

from pipeline.model.encoders import TinyEncoder
from tests.helpers import torch_threads


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: OpenMP threads only add barrier waits (100x slower on a busy 2-core box)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    """The tiny random CLIP (seeded, deterministic)."""
    return TinyEncoder(seed=0)
