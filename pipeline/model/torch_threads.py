"""A context manager for torch's intra-op thread count."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch intra-op threads, restoring the previous count afterwards. Tiny models
    want 1 (OpenMP barriers dominate); the real stand-in wants both cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
