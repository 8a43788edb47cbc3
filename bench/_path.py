"""Imported first by a bench started as ``python bench/NAME.py``: the repository root on sys.path.

A script's own folder (``bench/``) is ``sys.path[0]``, so ``pipeline`` and ``app`` cannot be
imported, and ``bench/app.py`` would shadow the ``app`` package. This puts the repository root in
that place, as ``python -m bench.NAME`` (run from the root) has it. A bench imports it with::

    if not __package__:  # started as `python bench/NAME.py`
        import _path  # noqa: F401
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_HERE = str(Path(__file__).resolve().parent)

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve().as_posix() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
