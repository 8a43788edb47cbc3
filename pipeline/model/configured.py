"""The scikit-learn shape of the trained parts (the projection, the head): ``__init__`` only stores
its settings; ``from_config`` builds an unfitted one from the config section, so each default lives
in one place (the config dataclass); ``get_params`` gives them back for an unfitted copy."""
from __future__ import annotations

import inspect


class Configured:
    """Mixin for a class whose ``__init__`` takes only settings named as in its config section."""

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The settings ``__init__`` takes (scikit-learn's ``_get_param_names``)."""
        return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")

    @classmethod
    def from_config(cls, cfg, **overrides):
        """An unfitted instance with ``cfg``'s settings; ``overrides`` replace some (e.g. ``seed``).
        Fields of ``cfg`` that ``__init__`` does not take belong to someone else (the split, what
        the projection is trained on)."""
        return cls(**{**{name: getattr(cfg, name) for name in cls.param_names()}, **overrides})

    def get_params(self) -> dict:
        """The settings, as ``__init__`` takes them: ``type(x)(**x.get_params())`` is an unfitted copy."""
        return {name: getattr(self, name) for name in self.param_names()}
