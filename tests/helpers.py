"""Small helpers shared by test modules (not fixtures: each module picks its own scope)."""
from __future__ import annotations

from pipeline.model.torch_threads import torch_threads  # noqa: F401  (re-exported for the tests)
