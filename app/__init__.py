"""FaXplainer's Dash app (``python -m app``; ``app.main.create_app``; the shared server in
``app.shared``).

From a notebook: ``app.show(run)`` serves the app on one run and shows it (``app.notebook``).
``show`` is loaded on first use (PEP 562), so ``import app`` imports neither Dash nor torch.
"""

__all__ = ["show"]


def __getattr__(name: str):
    if name == "show":
        import importlib  # by name: app.notebook imports app.main, which imports this package

        value = importlib.import_module("app.notebook").show
        globals()[name] = value
        return value
    raise AttributeError(f"module 'app' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
