"""FaXplainer pipeline: image folder -> embeddings -> vision-only features -> 16-d head -> cells.

Never imports Dash; usable from the CLI (``python -m pipeline``) and notebooks::

    import pipeline
    run = pipeline.run("/path/to/dataset")      # or pipeline.open_run("RUN_ID_OR_FOLDER")
    run.metrics, print(run.report())
    pipeline.maps(run, [0, 1, 2]); pipeline.concepts(run, cell=0); pipeline.atlas(run)
    pipeline.apply(run, "/path/to/new-images"); pipeline.matrix(run); pipeline.bias_probe(run)

The public names (``__all__``) are loaded on first use (PEP 562 ``__getattr__``), so ``import
pipeline`` stays cheap: it imports no torch, timm, scikit-learn or Dash. They live in
:mod:`pipeline.api` (thin functions over the runner, the run store, the explanation cache, the
applied sets, the matrix and the bias probe) and :mod:`pipeline.config`. The table below names
modules as strings: a lazy name cannot make an import cycle, since ``pipeline`` is complete
(``__version__`` included, which the runner reads) before any of them is loaded.
"""
__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "run": "pipeline.api",
    "open_run": "pipeline.api",
    "list_runs": "pipeline.api",
    "Run": "pipeline.api",
    "apply": "pipeline.api",
    "maps": "pipeline.api",
    "concepts": "pipeline.api",
    "matrix": "pipeline.api",
    "atlas": "pipeline.api",
    "bias_probe": "pipeline.api",
    "make_config": "pipeline.api",
    "Config": "pipeline.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
