"""``app.show(run)``: the app on one run, from a notebook or a script, served in a thread.

The app is built by :func:`app.main.create_app` over the run's runs folder, opening the run by
default (so the page's bare address opens it, as ``python -m app --run RUN_ID`` does), and served
on the loopback interface only, as local mode is.

In a Jupyter kernel Dash's own Jupyter mode serves it (``Dash.run(jupyter_mode=...)``: ``inline``
shows it in the cell, ``external`` prints its address, ``tab`` opens a browser tab, ``jupyterlab``
a JupyterLab tab). Without an IPython kernel ``Dash.run`` ignores ``jupyter_mode`` and serves in
the foreground until stopped, so here the app is served in a daemon thread instead (as Dash does
in Jupyter) and its address printed (``tab``: also opened with :mod:`webbrowser`). Either way
:func:`show` returns a :class:`Shown` whose ``stop()`` ends the server. While it serves, the
kernel's numpy runs one BLAS thread, since the app's jobs are forked from the kernel
(:mod:`app.jobs.fork_safety`); ``stop()`` gives the threads back.
"""
from __future__ import annotations

import dataclasses
import socket
import threading
from pathlib import Path
from urllib.parse import quote

MODES = ("inline", "external", "tab", "jupyterlab")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass
class Shown:
    """A served app: ``url`` opens the run; ``stop()`` ends the server; ``app`` is the Dash app."""

    url: str
    run_id: str
    app: object
    _stop: object = dataclasses.field(repr=False, default=None)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def __repr__(self) -> str:
        return f"FaXplainer on {self.url}"


def _in_jupyter() -> bool:
    from dash._jupyter import jupyter_dash  # dash's own test of an IPython kernel (and its deps)
    return bool(jupyter_dash.active)


def free_port(host: str = "127.0.0.1", first: int = 8050, last: int = 8099) -> int:
    """The first port in ``first..last`` nobody listens on, else one the system picks."""
    for port in range(first, last + 1):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def app_run_id(run, config=None) -> tuple[Path, str]:
    """(runs folder, the app's id of ``run``): ``RUN``, or ``RUN@SET`` for an applied set; a run
    id is looked up in the runs folder of ``config`` (``pipeline.open_run``)."""
    import pipeline

    r = pipeline.open_run(run, config)
    if r.is_applied:
        return r.store.run.path.resolve().parent, r.id
    return r.path.resolve().parent, r.id


def show(run, mode: str = "inline", *, config=None, host: str = "127.0.0.1", port: int | None = None,
         width: str = "100%", height: int = 800, open_browser: bool | None = None) -> Shown:
    """Serve the app on ``run`` (a ``pipeline.Run``, a run folder or a run id) and show it.

    Parameters
    ----------
    run : the run (or applied set) to open.
    mode : ``inline`` (in the output cell), ``external`` (print the address), ``tab`` (open a
        browser tab) or ``jupyterlab``; outside Jupyter every mode prints the address.
    config : the app's config (a file or ``pipeline.Config``; default: built-in defaults, as
        ``python -m app``); its runs folder is set to the run's, its mode must be ``local``.
    host, port : loopback only; ``port`` None: the first free one from 8050.
    width, height : of the inline frame.
    open_browser : open the address with :mod:`webbrowser` (default: only for ``tab`` outside
        Jupyter).

    Raises
    ------
    ValueError
        An unknown mode, a host other than loopback, a shared-mode config, or a run outside the
        runs folder that ``$FAXPLAINER_RUNS_DIR`` imposes.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    if host not in LOOPBACK:
        raise ValueError(f"the app serves on loopback only (got host {host!r}); to serve other "
                         "machines use the shared server, which asks for credentials")
    import pipeline
    from pipeline.config import load_config

    runs_dir, run_id = app_run_id(run, config)
    if config is None:
        cfg = load_config(None)
    else:
        cfg = config if isinstance(config, pipeline.Config) else pipeline.make_config(config)
    if cfg.server.mode != "local":
        raise ValueError("app.show serves local mode only (server.mode: shared is for `make serve-shared`)")
    cfg = dataclasses.replace(cfg, runs_dir=str(runs_dir))
    if Path(cfg.runs_path).resolve() != runs_dir:  # $FAXPLAINER_RUNS_DIR overrides runs_dir
        raise ValueError(f"run {run_id} is in {runs_dir}, but $FAXPLAINER_RUNS_DIR names "
                         f"{cfg.runs_path}: the app would not find it")

    from app.main import create_app

    dash_app = create_app(cfg, run_id)
    if cfg.server.preload_job_stack:
        from app.jobs.managers import preload_job_stack
        preload_job_stack()
    from app.jobs.fork_safety import single_threaded_blas_until_fork

    blas_back = single_threaded_blas_until_fork()  # the kernel forks the jobs (app.jobs.fork_safety)
    port = port or free_port(host)
    url = f"http://{host}:{port}/?run={quote(run_id, safe='@')}"
    if _in_jupyter():
        dash_app.run(host=host, port=port, jupyter_mode=mode, jupyter_width=width,
                     jupyter_height=height)
        from dash._jupyter import jupyter_dash

        def stop() -> None:
            server = jupyter_dash._servers.pop((host, port), None)
            if server is not None:
                server.shutdown()
            blas_back()

        return Shown(url, run_id, dash_app, stop)

    from werkzeug.serving import make_server

    server = make_server(host, port, dash_app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"faxplainer-{port}", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        blas_back()

    print(f"FaXplainer on {url}")
    if open_browser if open_browser is not None else mode == "tab":
        import webbrowser
        webbrowser.open(url)
    return Shown(url, run_id, dash_app, stop)
