"""The notebook front door: thin functions over the runner, the run store, the explanation cache,
the applied sets, the cross-generator matrix and the bias probe (``import pipeline`` exposes them).

Each function calls what the matching ``python -m pipeline`` command calls (``pipeline.cli.main``),
importing it by name when it runs, so that this module (and ``import pipeline``) stays cheap and a
change behind those public names does not reach here. A run is given as a :class:`Run`, a
``RunStore``, a run folder, or a run id in the configured runs folder (``RUN@SET`` names an applied
set of run RUN, as the app does).
"""
from __future__ import annotations

import io
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Callable

from pipeline.config import REPO_ROOT, Config

APPLIED_SEP = "@"  # "RUN@SET": applied set SET of run RUN (the app's id for it)
Progress = Callable[..., None]


class Run:
    """A run folder (or an applied set's folder) opened for reading, with its explanations one
    call away. ``os.fspath(run)`` is its folder, so it goes wherever a run folder does.

    Attributes read the folder each time (``meta``, ``records``, ``cells``: checked against the
    checksums in ``meta.json``); ``store`` is the ``pipeline.store.run_store.RunStore`` (or
    ``AppliedStore``) underneath.
    """

    def __init__(self, store):
        self.store = store

    # -- what the run is ---------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def id(self) -> str:
        """The run's id; an applied set's is ``RUN@SET``."""
        if self.is_applied:
            return f"{self.store.run.run_id}{APPLIED_SEP}{self.store.name}"
        return self.store.run_id

    @property
    def is_applied(self) -> bool:
        from pipeline.store.run_store import AppliedStore
        return isinstance(self.store, AppliedStore)

    @property
    def meta(self) -> dict:
        """``meta.json``: data, encoder, config, metrics, checks, bad files."""
        return self.store.read_meta()

    @property
    def config(self) -> Config:
        return self.store.config()

    @property
    def records(self) -> list[dict]:
        """One dict per image (``records.csv``: id, path, label, split, prob, pred, cell, ...)."""
        return self.store.read_records()

    @property
    def cells(self) -> dict:
        """``cells.json``: ``{"cells": [{"id", "n", "accuracy", ...}], ...}``."""
        return self.store.read_cells()

    @property
    def metrics(self) -> dict | None:
        """Held-out metrics (``meta.json`` -> ``metrics``; None for an applied set without labels)."""
        return self.meta.get("metrics")

    @property
    def checks(self) -> dict | None:
        """The data checks made with the run (shortcuts, duplicates, leakage, near-duplicates)."""
        return self.meta.get("checks")

    @property
    def probe(self) -> dict | None:
        """The bias probe's result when it has been run (:func:`bias_probe` runs it)."""
        from pipeline.checks.validity import read_probe
        return read_probe(self.path)

    @property
    def applied_sets(self) -> list["Run"]:
        """The run's complete applied sets (:func:`apply`)."""
        return [] if self.is_applied else [Run(s) for s in self.store.applied_sets()]

    def report(self) -> str:
        """What ``python -m pipeline info`` prints: metrics, data checks, applied sets, matrix."""
        from pipeline.cli.generalise import print_applied, print_applied_sets, print_matrix_if_kept
        from pipeline.cli.main import print_metrics

        out = io.StringIO()
        if self.is_applied:
            print_applied(self.store, out=out)
        else:
            print_metrics(self.meta, out=out, probe=self.probe)
            print_applied_sets(self.store, out=out)
            print_matrix_if_kept(self.store, out=out)
        return out.getvalue()

    # -- the same as the module's functions, on this run ----------------------------------------------
    def maps(self, images, **kwargs) -> dict:
        return maps(self, images, **kwargs)

    def concepts(self, cell: int, **kwargs) -> dict:
        return concepts(self, cell, **kwargs)

    def apply(self, data, name: str | None = None, **kwargs) -> "Run":
        return apply(self, data, name, **kwargs)

    def matrix(self, **kwargs) -> dict:
        return matrix(self, **kwargs)

    def atlas(self, **kwargs) -> dict:
        return atlas(self, **kwargs)

    def bias_probe(self, **kwargs) -> dict:
        return bias_probe(self, **kwargs)

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    def __repr__(self) -> str:
        try:
            meta = self.meta
        except Exception as e:  # a damaged or missing folder still has a repr
            return f"<Run {self.id} at {self.path}: {e}>"
        data, head = meta.get("data") or {}, (meta.get("metrics") or {}).get("head") or meta.get("metrics")
        figures = f"accuracy {head['accuracy']:.3f}, AP {head['ap']:.3f}, AUC {head['auc']:.3f}" \
            if isinstance(head, dict) and head.get("accuracy") is not None else "no labels"
        return f"<Run {self.id}: {data.get('n_images')} images, {figures}; {self.path}>"


# -- configuration and progress ------------------------------------------------------------------------

def _config_path(config: str | os.PathLike) -> Path:
    """A config file as given, else relative to the repository (``configs/clip.yaml`` from anywhere)."""
    path = Path(config).expanduser()
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


def _flat(key: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flat(f"{key}.{k}", v)]
    return [(key, value)]


def make_config(config: str | os.PathLike | Config | None = None, **overrides) -> Config:
    """A configuration as the CLI's ``--config`` (default ``configs/default.yaml``) and ``--set``:
    ``section__key=value`` (``head__ortho_weight=0.5``) or ``section={"key": value}``."""
    from pipeline.config import from_dict, load_config, set_dotted, to_dict

    if isinstance(config, Config):
        cfg = config
    else:
        default = REPO_ROOT / "configs" / "default.yaml"  # as the CLI's --config
        cfg = load_config(_config_path(config if config is not None else default))
    if not overrides:
        return cfg
    values = to_dict(cfg)
    for key, value in overrides.items():
        for dotted, v in _flat(key.replace("__", "."), value):
            set_dotted(values, dotted, v)
    return from_dict(values)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


class _Bar:
    """``progress(done, total[, stage])`` as one tqdm bar (what the CLI shows for one stage)."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int, stage: str | None = None) -> None:
        from pipeline.cli.main import StageBars
        if self.bar is None:
            self.bar = StageBars()
        self.bar(self.desc, done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(progress, staged: bool, desc: str = ""):
    """(callback, close) for ``progress``: True -> tqdm bars as the CLI's, False/None -> none."""
    if progress is True:
        from pipeline.cli.main import StageBars
        bars = StageBars() if staged else _Bar(desc)
        return bars, bars.close
    return (progress or None), (lambda: None)


# -- runs --------------------------------------------------------------------------------------------

def open_run(run, config: str | os.PathLike | Config | None = None) -> Run:
    """Open a run: a :class:`Run`, a ``RunStore``, a run folder (or an applied set's folder), or a
    run id (``RUN`` or ``RUN@SET``) in the runs folder of ``config`` (``$FAXPLAINER_RUNS_DIR``
    when set).

    Raises
    ------
    FileNotFoundError
        Neither the folder nor the id holds a ``meta.json``.
    """
    from pipeline.store.run_store import RunStore, open_store

    if isinstance(run, Run):
        return run
    if isinstance(run, RunStore):
        return Run(run)
    path = Path(os.fspath(run)).expanduser()
    if (path / "meta.json").is_file():
        return Run(open_store(path))
    runs = make_config(config).runs_path
    name, _, applied = str(run).partition(APPLIED_SEP)
    cand = runs / name / "applied" / applied if applied else runs / name
    if "/" not in str(run) and (cand / "meta.json").is_file():
        return Run(open_store(cand))
    raise FileNotFoundError(f"no run {str(run)!r}: neither {path} nor {cand} holds a meta.json")


def list_runs(config: str | os.PathLike | Config | None = None) -> list[Run]:
    """The runs in the runs folder of ``config``, newest first."""
    from pipeline.store.run_store import list_runs as runs_in
    return [Run(s) for s in runs_in(make_config(config).runs_path)]


def run(data: str | os.PathLike | None = None, config: str | os.PathLike | Config | None = None, *,
        progress: bool | Progress = True, **overrides) -> Run:
    """Run the pipeline on ``data`` (an image folder or CSV manifest; None: the configured data,
    else the offline demo set) as ``python -m pipeline run --data DATA --config CONFIG --set ...``.

    ``overrides``: ``section__key=value`` or ``section={"key": value}`` (see :func:`make_config`);
    ``progress``: tqdm bars (True), none (False), or ``progress(stage, done, total)``.
    An unchanged configuration on unchanged data returns the existing run.
    """
    from pipeline.config import with_data
    from pipeline.runner import run_pipeline

    cfg = make_config(config, **overrides)
    if data is not None:
        cfg = with_data(cfg, data, cfg.data.categories, cfg.data.generators)
    if cfg.data.root is None and cfg.data.manifest is None:
        from pipeline.data.demo.builtin import ensure_demo_config
        cfg = ensure_demo_config(cfg, log=_log)
    report, close = _progress(progress, staged=True)
    try:
        return Run(run_pipeline(cfg, progress=report))
    finally:
        close()


def apply(run, data: str | os.PathLike, name: str | None = None, *,
          progress: bool | Progress = True) -> Run:
    """Score the images of ``data`` with ``run`` and keep them as an applied set of it
    (``pipeline apply RUN --data DATA [--name NAME]``); returns the applied set."""
    from pipeline.generalise.apply import apply_run

    report, close = _progress(progress, staged=True)
    try:
        return Run(apply_run(open_run(run).path, data, name=name, progress=report))
    finally:
        close()


def _indices(r: Run, images) -> list[tuple[Any, int]]:
    """(as given, row of records.csv) per image: ints are rows, strings ``id`` values."""
    if isinstance(images, (str, numbers.Integral)):
        images = [images]
    images = list(images)
    if not any(isinstance(i, str) for i in images):
        return [(i, int(i)) for i in images]
    index_of = {rec["id"]: k for k, rec in enumerate(r.records)}
    unknown = [i for i in images if isinstance(i, str) and i not in index_of]
    if unknown:
        raise ValueError(f"image ids not in run {r.id}: {', '.join(unknown)} "
                         f"(ids are the `id` column of {r.path / 'records.csv'})")
    return [(i, index_of[i] if isinstance(i, str) else int(i)) for i in images]


def maps(run, images, *, progress: bool | Progress = False,
         on_error: Callable[[int, str], None] | None = None) -> dict:
    """Relevance maps of some images of ``run`` (rows of ``records.csv``, or their ``id`` strings),
    cached in the run: ``{image: pipeline.explain.cache.ImageMaps}`` (``.maps`` 16 x H x W in
    [0, 1], ``.aggregate`` signed, ``.rgb`` the model input, ``.z``, ``.contributions``, ``.logit``).

    Unreadable images are left out with a line on stderr (as ``pipeline explain``), unless
    ``on_error(index, message)`` is given.
    """
    from pipeline.explain.cache import get_maps

    r = open_run(run)
    wanted = _indices(r, images)
    if on_error is None:
        def on_error(index: int, message: str) -> None:
            print(f"skipped image {index}: {message}", file=sys.stderr)
    report, close = _progress(progress, staged=False, desc="maps")
    try:
        got = get_maps(r.path, [k for _, k in wanted], progress=report, on_error=on_error)
    finally:
        close()
    return {given: got[k] for given, k in wanted if k in got}


def concepts(run, cell: int, *, progress: bool | Progress = False) -> dict:
    """Visual concepts of one cell of ``run``, cached in the run (``pipeline concepts RUN --cell``):
    ``{"cell", "n_images", "concepts": [{"id", "size", "n_images", "profile", "patches", ...}]}``;
    ``patches`` are PNG paths relative to the run folder."""
    from pipeline.explain.cache import get_concepts

    report, close = _progress(progress, staged=False, desc="concepts")
    try:
        return get_concepts(open_run(run).path, cell, progress=report)
    finally:
        close()


def atlas(run, n_images: int | None = None, *, recompute: bool = False,
          progress: bool | Progress = True) -> dict:
    """The run's dimension atlas, kept in the run (``pipeline atlas RUN [--images N]``): per
    dimension its share of relevance on the subject, the border and textured regions, its
    concentration, contribution, highest and lowest images and a sentence; its text:
    ``pipeline.explain.atlas.atlas_lines(a)``."""
    from pipeline.explain.atlas_jobs import get_atlas

    report, close = _progress(progress, staged=True)
    try:
        return get_atlas(open_run(run).path, (lambda d, t, stage: report(stage, d, t)) if report else None,
                         n_images=n_images, recompute=recompute)
    finally:
        close()


def matrix(run, *, recompute: bool = False, progress: bool | Progress = True) -> dict:
    """The run's cross-generator matrix, kept in the run (``pipeline matrix RUN``); its text:
    ``pipeline.generalise.run_matrix.matrix_text(m)``."""
    from pipeline.generalise.run_matrix import run_matrix

    report, close = _progress(progress, staged=False, desc="heads")
    try:
        return run_matrix(open_run(run).path, recompute=recompute, progress=report)
    finally:
        close()


def bias_probe(run, n_images: int | None = None, *, progress: bool | Progress = True) -> dict:
    """The bias probe of the run's detector on its held-out images, kept in the run
    (``pipeline probe RUN [--images N]``); its text: ``pipeline.checks.validity.probe_lines(p)``."""
    from pipeline.checks.validity import run_bias_probe

    report, close = _progress(progress, staged=False, desc="bias probe")
    try:
        return run_bias_probe(open_run(run).path, n_images=n_images, progress=report)
    finally:
        close()

