"""What the app's callbacks and routes share: the config, the folders, loaded runs.

One :class:`AppContext` is made per app by :func:`app.main.create_app` and handed to each view's
``register`` function; nothing lives in module globals. The run cache is per process and holds
read-only data only, so several gunicorn workers each keep their own copy without disagreeing.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from pipeline.config import Config
from pipeline.store.run_store import APPLIED, ArtifactError, list_runs

from app.state.runs import RunView, split_run_id, valid_run_id

MAX_CACHED_RUNS = 4


class AppContext:
    """Config, folders and a small cache of loaded runs.

    Parameters
    ----------
    cfg : Config
        The app's configuration (runs and cache folders, defaults for new runs).
    run_id : str, optional
        Run shown when the URL names none (default: the newest complete run).
    """

    def __init__(self, cfg: Config, run_id: str | None = None):
        self.cfg = cfg
        self.runs_path = Path(cfg.runs_path)
        self.cache_path = Path(cfg.cache_path)
        self.default_run_id = run_id
        self._runs: OrderedDict[str, tuple[int, RunView]] = OrderedDict()
        self._lock = threading.Lock()

    def run_dir(self, run_id: object) -> Path | None:
        """Folder of ``run_id`` if it is a valid id of an existing run, else None; for
        ``RUN@SET`` (``app.state.runs``), the folder of run RUN's complete applied set SET."""
        if not valid_run_id(run_id):
            return None
        run, name = split_run_id(str(run_id))
        path = self.runs_path / run
        if path.resolve().parent != self.runs_path.resolve() or not (path / "meta.json").is_file():
            return None
        if name is None:
            return path
        applied = path / APPLIED / name
        if applied.resolve().parent != (path / APPLIED).resolve() or not (applied / "meta.json").is_file():
            return None
        try:
            complete = json.loads((applied / "meta.json").read_text()).get("status") == "complete"
        except (OSError, ValueError):
            return None
        return applied if complete else None

    def run(self, run_id: object) -> RunView | None:
        """The loaded run ``run_id`` (cached; reloaded when its meta.json changes), or None."""
        path = self.run_dir(run_id)
        if path is None:
            return None
        stamp = (path / "meta.json").stat().st_mtime_ns
        with self._lock:
            hit = self._runs.get(str(run_id))
            if hit and hit[0] == stamp:
                self._runs.move_to_end(str(run_id))
                return hit[1]
        try:
            view = RunView.load(path, self.cache_path)
        except (ArtifactError, OSError, ValueError, KeyError):
            return None
        with self._lock:
            self._runs[str(run_id)] = (stamp, view)
            while len(self._runs) > MAX_CACHED_RUNS:
                self._runs.popitem(last=False)
        return view

    def run_error(self, run_id: object) -> str | None:
        """Why ``run_id`` cannot be opened (for the status line), or None when it can."""
        path = self.run_dir(run_id)
        if path is None:
            return f"no run named {run_id!r} in {self.runs_path}"
        try:
            RunView.load(path, self.cache_path)
        except (ArtifactError, OSError, ValueError, KeyError) as e:
            return f"run {run_id} cannot be opened: {e}"
        return None

    def initial_run(self) -> str | None:
        """The configured run, else the newest complete one, else None."""
        if self.default_run_id and self.run_dir(self.default_run_id):
            return self.default_run_id
        for store in list_runs(self.runs_path):
            try:
                if store.read_meta().get("status") == "complete":
                    return store.run_id
            except ArtifactError:
                continue
        return None

    def app_cache(self, view: RunView) -> Path:
        """Folder of the app's derived files for ``view`` (grids, sprites, overlays, concepts,
        image sets): ``<cache>/app/<run key>/`` (``RunView.app_dir``)."""
        return view.app_dir
