"""The built-in demo: when no data set is configured, build the offline demo set once (cached) and
point the configuration at it."""
from __future__ import annotations

import dataclasses
from typing import Callable

from pipeline.config import Config


def demo_data_dir(cfg: Config):
    return cfg.cache_path / "demo-data" / f"size{cfg.data.demo_size}-seed0"


def ensure_demo_config(cfg: Config, log: Callable[[str], None] = print,
                       progress: Callable[[str, int, int], None] | None = None) -> Config:
    """Return ``cfg`` with ``data.root`` set to the demo set, building it first if needed."""
    from pipeline.data.demo.build import build_demo_dataset
    out = demo_data_dir(cfg)
    log(f"no data set configured: using the offline demo set at {out}")
    build_demo_dataset(out, size=cfg.data.demo_size, seed=0, cache_dir=cfg.cache_path,
                       progress=progress, log=log)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(out), manifest=None))
