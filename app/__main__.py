"""``python -m app [--config FILE] [--run RUN_ID] [--host 127.0.0.1] [--port 8050]``.

With ``--build-if-missing`` and no complete run in the runs folder, the pipeline first runs on the
configured data (or the offline demo set) so that the app opens on a run.
"""
from __future__ import annotations

import argparse
import sys

from pipeline.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="FaXplainer app")
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set data.root=/data/set")
    parser.add_argument("--run", default=None, help="run id opened by default")
    parser.add_argument("--host", default="127.0.0.1", help="local mode serves on loopback only")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--build-if-missing", action="store_true",
                        help="run the pipeline first when there is no complete run")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    if cfg.server.mode != "local":
        parser.error("this config is for the shared server (server.mode: shared): start it with "
                     "`make serve-shared` (scripts/serve_shared.sh)")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"local mode serves on 127.0.0.1 only (got --host {args.host}); to serve other "
                     f"machines use the shared server, which asks for credentials")

    from app.state.context import AppContext
    from app.main import create_app

    if args.build_if_missing and AppContext(cfg, args.run).initial_run() is None:
        from app.jobs.work import run_new
        from pipeline.cli.main import StageBars

        bars = StageBars()
        try:
            args.run = run_new(cfg, bars)
        finally:
            bars.close()
    app = create_app(cfg, args.run)
    if cfg.server.preload_job_stack:
        from app.jobs.managers import preload_job_stack

        print("loading torch & co. once for the app's background jobs ...", file=sys.stderr)
        print(f"... loaded in {preload_job_stack():.1f} s", file=sys.stderr)
    from app.jobs.fork_safety import single_threaded_blas_until_fork

    single_threaded_blas_until_fork()  # its jobs are forked from this process (app.jobs.fork_safety)
    print(f"FaXplainer on http://{args.host}:{args.port}", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
