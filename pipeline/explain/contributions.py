"""Each dimension's contribution to the logit without a relevance pass, and the column order of
the attention matrix that follows from it. Torch-free: the web process uses it.

``pipeline.explain.relevance`` gives each map its dimension's contribution
``c_k = classifier.weight[0, k] * z_k`` (the head's output layer, ``HeadModule.classifier``).
The run keeps every image's ``z`` (``z16.npy``) and the head (``head.pt``), so the same
contributions, and so the columns' order, are known before the first map is computed:
:func:`read_classifier_weight` reads the output layer's weight out of ``head.pt`` without torch,
:func:`contributions` applies the formula, :func:`column_order` sorts by it.

``head.pt`` is a ``torch.save`` zip archive: ``<name>/data.pkl`` pickles the state, and each
tensor's bytes lie in ``<name>/data/<key>``. The restricted unpickler here knows only the few
globals a state dict of float tensors needs (anything else is refused, as ``torch.load(...,
weights_only=True)`` does) and rebuilds each tensor as a numpy array.
"""
from __future__ import annotations

import collections
import functools
import pickle
import zipfile
from pathlib import Path

import numpy as np

from pipeline.store.derived import scoring_run
from pipeline.store.run_store import HEAD, ArtifactError, RunStore, sha256_file

CLASSIFIER_WEIGHT = "classifier.weight"  # HeadModule's output layer, (1, K)

# torch storage classes -> numpy dtypes (little-endian: torch.save writes the "byteorder" it used)
_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
                   "LongStorage": "<i8", "IntStorage": "<i4", "BoolStorage": "?", "ByteStorage": "u1"}


def contributions(z: np.ndarray, classifier_weight: np.ndarray) -> np.ndarray:
    """(N, K) ``classifier_weight[k] * z[:, k]``: each dimension's part of the logit (the maps'
    ``contributions``, :func:`pipeline.explain.relevance._assemble`), in float64."""
    w = np.asarray(classifier_weight, dtype=np.float64).ravel()
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    if z.shape[1] != len(w):
        raise ValueError(f"z has {z.shape[1]} dimensions but the head's output layer has {len(w)} weights")
    return z * w


def column_order(contributions: np.ndarray) -> list[int]:
    """Dimensions by mean |contribution| over the rows, largest first (ties: by index)."""
    c = np.atleast_2d(np.asarray(contributions, dtype=np.float64))
    if c.size == 0:
        return []
    return [int(k) for k in np.argsort(-np.abs(c).mean(axis=0), kind="stable")]


def read_classifier_weight(run_dir: str | Path) -> np.ndarray:
    """(K,) float64 weight of the head's output layer of the run ``run_dir`` (an applied set's
    folder: its run's head), read from ``head.pt`` without torch and kept per file version.

    Raises
    ------
    pipeline.store.run_store.ArtifactError
        ``head.pt`` is missing, fails its checksum, or holds no readable output layer.
    """
    run = scoring_run(Path(run_dir))
    path = run / HEAD
    try:
        st = path.stat()
    except OSError as e:
        raise ArtifactError(f"{path} is missing: the head's weights order the attention columns") from e
    expected = (RunStore(run).read_meta().get("checksums") or {}).get(HEAD)
    return _weight_of(str(path), st.st_size, st.st_mtime_ns, expected).copy()


@functools.lru_cache(maxsize=8)
def _weight_of(path: str, size: int, mtime_ns: int, expected: str | None) -> np.ndarray:
    if expected is not None and sha256_file(path) != expected:
        raise ArtifactError(f"{path} fails its checksum (corrupted); recompute the run")
    try:
        state = read_torch_state(path)
        weight = np.asarray(state["state_dict"][CLASSIFIER_WEIGHT], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise ArtifactError(f"{path} holds no readable {CLASSIFIER_WEIGHT} ({e})") from e
    return weight


def read_torch_state(path: str | Path) -> dict:
    """A ``torch.save``'d state (dicts, numbers, float tensors) with numpy arrays for tensors."""
    with zipfile.ZipFile(path) as archive:
        pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise ValueError("not a torch zip archive (no data.pkl)")
        prefix = pkl[: -len("data.pkl")]
        byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in archive.namelist() \
            else "little"
        if byteorder != "little":
            raise ValueError(f"tensors written {byteorder}-endian are not supported")
        with archive.open(pkl) as fh:
            return _StateUnpickler(fh, archive, prefix).load()


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """numpy view for ``torch._utils._rebuild_tensor_v2`` (strides are counted in elements)."""
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride)).copy()


class _StateUnpickler(pickle.Unpickler):
    _GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict,
                ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor}

    def __init__(self, fh, archive: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self._archive, self._prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a state dict of tensors")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or dtype not in _STORAGE_DTYPES.values():
            raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
        data = self._archive.read(f"{self._prefix}data/{key}")
        return np.frombuffer(data, dtype=dtype, count=int(numel))
