"""Run configuration: frozen dataclasses, YAML loading, dotted overrides and a fingerprint.

Defaults live in the dataclasses; a YAML file overrides some of them; the CLI overrides single
dotted keys (``--set head.ortho_weight=0.5``). Environment variables are used only for paths and
secrets (see ``FAXPLAINER_*`` below). ``fingerprint()`` of a section feeds the artifact keys, so a
change to one stage's settings recomputes only that stage and what follows it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import yaml

from pipeline.reencode_spec import ReencodeSpec

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None  # folder in the CNNDetection layout (<root>/[gen/][cat/]0_real|1_fake)
    manifest: str | None = None  # CSV manifest path,label[,generator,category]; paths relative to it
    generators: tuple[str, ...] | None = None  # keep only these generators (None = all)
    categories: tuple[str, ...] | None = None  # keep only these categories (None = all)
    max_image_pixels: int = 89_478_485  # decompression-bomb guard (Pillow's own default)
    demo_size: int = 400  # images per class of the built-in demo set when no data is configured
    # controlled re-encoding before embedding, so format and size cannot be shortcuts:
    # "jpeg[:QUALITY[:SIZE]]" or "png[:SIZE]", e.g. "jpeg:90:256" (pipeline/data/reencode.py); None = off
    reencode: str | None = None

    def __post_init__(self):
        self.reencode_spec  # parsed now: a bad spec fails when the config is made, with a clear message

    @cached_property
    def reencode_spec(self) -> ReencodeSpec | None:
        """``reencode`` parsed (None = off), once per config. Not a field: fingerprints and the
        saved config hold the ``reencode`` string only."""
        return ReencodeSpec.parse(self.reencode)


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "auto"  # auto | open_clip | dinov2_standin | tiny
    model: str = "ViT-B-32"  # open_clip architecture name
    pretrained: str = "openai"  # open_clip pretrained tag
    checkpoint: str | None = None  # local open_clip checkpoint; else $FAXPLAINER_CLIP_CHECKPOINT
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast on CUDA; on CPU the fastest of int8 (ONNX Runtime) and bf16 that the CPU
    # runs natively and that measurably agrees with fp32 (pipeline/model/encoders/precision.py),
    # else fp32 | fp32 | bf16 | fp16 | int8 (CPU only; maps stay fp32)
    precision: str = "auto"
    batch_size: int = 64
    num_workers: int = 2  # image-decoding worker processes
    chunk_size: int = 512  # embeddings written to disk every this many images (resume granularity)


TRAIN_ON = ("background", "data", "both")  # what projection.train_on may name


@dataclass(frozen=True)
class ProjectionConfig:
    # vision-only output size; None = per encoder (pipeline.model.projection.projection_dim):
    # the paper's 256 for CLIP's 512-d embedding, half a wider embedding (the stand-in's 1536 -> 768)
    dim: int | None = None
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 128
    ortho_weight: float = 1.0  # weight of ||I - W W^T||_F (Materzynska et al.)
    temperature: float = 0.07
    max_train_images: int = 400  # images drawn with words for training (each gets fresh words)
    words_per_image: int = 2
    seed: int = 0
    # data: on this data set's images (about 1,200 word-rendered images embedded per data set) |
    # background: once per encoder on a fixed photo set (cached; faster, but the stand-in's head
    # then lost 0.024 held-out AUC on faces against the reference probe: README "Detector
    # fidelity") | both (TRAIN_ON)
    train_on: str = "data"
    background: str | None = None  # folder of photos for train_on: background (None = built-in set)
    background_size: int = 400  # crops in the built-in background set (registry packages' photos)


@dataclass(frozen=True)
class HeadConfig:
    dim: int = 16  # distilled representation size
    ortho_weight: float = 0.1  # weight of ||W W^T - I||^2 on the 256 -> 16 layer
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 300
    # early stopping: epochs without a lower loss on the validation part of the training split
    # (validation_fraction of it, stratified; pipeline.data.splits.validation_mask), never the held-out split
    patience: int = 20
    holdout_fraction: float = 0.3  # held-out split: measured, never trained or stopped on
    seed: int = 0
    # part of the training split the early stopping watches (the run's head and the cross-generator
    # matrix); a class constant, not a setting: not in fingerprints nor in saved configs
    validation_fraction: ClassVar[float] = 0.15


@dataclass(frozen=True)
class CellsConfig:
    n_cells: int | None = None  # None = about sqrt(N)*2, clipped to [8, 5000]
    seed: int = 0


@dataclass(frozen=True)
class RelevanceConfig:
    start_block: int = 0  # first block in the rollout; -1 = last block only (CLIP notebook)


@dataclass(frozen=True)
class ConceptsConfig:
    k: int = 3
    slic_segments: tuple[int, ...] = (15, 50, 80)  # coarse / medium / fine (ACE)
    keep_fraction: float = 0.3  # segments whose mean relevance is in the top fraction are kept
    patches_per_concept: int = 8
    max_images: int = 64  # images of a cell sampled for concepts (bounds the time per cell)
    max_segments_per_image: int = 3  # most relevant segments kept per image
    seed: int = 0


@dataclass(frozen=True)
class ChecksConfig:
    shortcut_auc: float = 0.8  # a file fact predicting the label this well alone is a shortcut risk
    exclude_conflicts: bool = True  # the same bytes under both labels: left out of training and metrics
    near_duplicate_cos: float = 0.97  # held-out images this close to a training image (vision-only features)
    bias_images: int = 1000  # held-out images the bias probe re-encodes (half real, half fake)


@dataclass(frozen=True)
class ServerConfig:
    mode: str = "local"  # local: one process, diskcache jobs, 127.0.0.1 only | shared: gunicorn+Celery+Redis
    host: str = "127.0.0.1"  # shared mode binds here (local mode always binds 127.0.0.1)
    port: int = 8050
    web_workers: int = 3  # gunicorn worker processes (shared mode)
    job_workers: int = 2  # Celery worker concurrency (bounded: each holds an encoder)
    grid_workers: int = 1  # Celery processes for cells' grids only, so a cell click never waits for maps
    heavy_nice: int = 10  # CPU priority (nice) of the maps/concepts and runs workers: clicks go first
    grids_with_run_max_images: int = 20000  # runs the app makes up to this size get every grid at once
    preload_job_stack: bool = True  # local mode: torch & co. imported once, before serving (jobs.py)
    redis_url: str = "redis://127.0.0.1:6379/0"  # overridden by $FAXPLAINER_REDIS_URL
    users_file: str | None = None  # htpasswd-style user:hash lines; else $FAXPLAINER_USERS_FILE
    data_roots: tuple[str, ...] = ()  # shared mode: new runs read only under these (+ $FAXPLAINER_DATA_ROOTS)
    trusted_proxies: int = 0  # reverse proxies in front: X-Forwarded-For names the client only if > 0
    login_free_failures: int = 5  # wrong passwords per (client address, user) before lockouts start
    login_lock_s: float = 1.0  # first lockout; it doubles with each further wrong password
    login_max_lock_s: float = 900.0  # longest lockout
    login_window_s: float = 3600.0  # wrong passwords are forgotten this long after the last one


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    cells: CellsConfig = field(default_factory=CellsConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    concepts: ConceptsConfig = field(default_factory=ConceptsConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    runs_dir: str = "runs"  # run folders; relative paths are relative to the repository
    cache_dir: str = ".cache/faxplainer"  # embeddings, converted weights, thumbnails

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections (all when none), for artifact keys and ``cache_by``."""
        payload = to_dict(self)
        if sections:
            payload = {s: payload[s] for s in sections}
        return _hash(payload)

    @property
    def runs_path(self) -> Path:
        return resolve_path(os.environ.get("FAXPLAINER_RUNS_DIR", self.runs_dir))

    @property
    def cache_path(self) -> Path:
        return resolve_path(os.environ.get("FAXPLAINER_CACHE_DIR", self.cache_dir))


def resolve_path(p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _build(cls, values: dict, where: str):
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with a clear message."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)} in {where or 'top level'}; "
                         f"known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING \
            else known[name].default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value or {}, f"{where}.{name}".strip("."))
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def from_dict(values: dict) -> Config:
    return _build(Config, values or {}, "")


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text)


def set_dotted(values: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = values
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load ``path`` (YAML; may name a ``base:`` file to extend) and apply ``key=value`` overrides."""
    values: dict = {}
    if path is not None:
        values = _load_yaml_with_base(Path(path))
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        set_dotted(values, key.strip(), _parse_scalar(raw))
    return from_dict(values)


def _load_yaml_with_base(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    base = values.pop("base", None)
    if base:
        merged = _load_yaml_with_base((path.parent / base).resolve())
        _deep_update(merged, values)
        return merged
    return values


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def with_data(cfg: Config, path: str | Path | None, categories: tuple[str, ...] | None = None,
              generators: tuple[str, ...] | None = None) -> Config:
    """``cfg`` reading the data set at ``path``: a folder (CNNDetection layout, or holding a
    ``manifest.csv``) or a ``.csv`` manifest; ``categories`` / ``generators`` keep only those
    (None = all). An empty ``path`` keeps the configured data.

    The one place that decides what a data path means, for the CLI (``--data``), the app's
    "new run" panel and the embedding shards.

    Raises
    ------
    ValueError
        ``path`` does not exist, or is neither a folder nor a ``.csv`` file.
    """
    data = cfg.data
    text = str(path or "").strip()
    if text:
        p = Path(text).expanduser()
        if not p.exists():
            raise ValueError(f"{p} does not exist")
        if p.is_dir():
            data = dataclasses.replace(data, root=str(p.resolve()), manifest=None)
        elif p.suffix.lower() == ".csv":
            data = dataclasses.replace(data, root=None, manifest=str(p.resolve()))
        else:
            raise ValueError(f"{p} is neither a folder (0_real/1_fake layout) nor a .csv manifest")
    data = dataclasses.replace(data, categories=tuple(categories) if categories else None,
                               generators=tuple(generators) if generators else None)
    return dataclasses.replace(cfg, data=data)
