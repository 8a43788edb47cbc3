"""Keep a web process that forks its jobs safe from numpy's threaded BLAS.

In local mode every view job is a process forked from the web process (``DiskcacheManager``),
by a request thread, while other request threads run numpy. OpenBLAS's thread pool does not
survive a fork taken while another thread is inside a threaded BLAS call: the forking thread
blocks in OpenBLAS's fork handler holding the GIL, and the whole web process stops (reproduced
with numpy 2.4's OpenBLAS 0.3.31: two threads upsampling maps with ``einsum``, as the profiles
behind the attention and concept count lines did, the main thread forking: stopped at the first
fork; ``tests/unit/test_fork_safety.py``). That was the concept view's count line that never came
(a CI run, and once in a drive of the demo run): no request was answered after it.

With one BLAS thread in the web process there is no pool to break (the request threads still run
side by side; each BLAS call there is small). A forked job gets the machine's BLAS threads back,
since it is a fresh process doing the heavy work. Called by whatever serves local mode
(``python -m app``, ``app.show`` in a notebook, which gives its kernel the threads back on
``stop()``); not by ``create_app`` itself, which tests call in-process without serving.

torch's OpenMP needs nothing of the kind: its pool belongs to the thread that ran a parallel
region, and the request threads that fork never run one (the web imports torch but runs no torch
operation), so a forked job's first region starts a pool of its own, even in a notebook kernel
that ran the pipeline itself (measured: a fork from the thread that ran torch hangs the child's
first region 5 times in 5; from another thread, 0 in 5).
"""
from __future__ import annotations

import ctypes
import itertools
import os
from typing import Callable

from threadpoolctl import threadpool_info

_ENV = "OPENBLAS_NUM_THREADS"  # read by an OpenBLAS loaded later
_AFFIXES = list(itertools.product(("", "scipy_"), ("", "64_", "_64")))  # numpy's and scipy's builds
_state: dict = {"holders": 0}


class _OpenBLAS:
    """One loaded OpenBLAS's get/set thread count, resolved once in the parent: a forked child must
    not look symbols up (``dlopen``/``dlsym`` take the loader's lock, which a thread of the parent
    may have held at the fork)."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)  # already loaded: never loads anything
        for prefix, suffix in _AFFIXES:
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            if get is not None:
                self.get, self.set = get, getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
                return
        raise LookupError(f"{path}: no openblas_get_num_threads")


def _loaded_openblas() -> list[_OpenBLAS]:
    return [_OpenBLAS(lib["filepath"]) for lib in threadpool_info() if lib.get("internal_api") == "openblas"]


def single_threaded_blas_until_fork() -> Callable[[], None]:
    """One BLAS thread in this process while it serves; each child forked meanwhile gets back the
    count this process had. Call it after the job stack is imported (``preload_job_stack``: scipy
    loads an OpenBLAS of its own). Returns ``restore()``, which gives this process its threads back
    once no server needs it (a notebook's kernel after ``Shown.stop()``)."""
    if _state["holders"] == 0:
        _state["libs"] = libs = _loaded_openblas()
        _state["threads"] = [lib.get() for lib in libs]
        _state["env"] = os.environ.get(_ENV)
        if not _state.get("hooked"):
            os.register_at_fork(after_in_child=_restore_in_child)
            _state["hooked"] = True
        for lib in libs:
            lib.set(1)
        os.environ[_ENV] = "1"
    _state["holders"] += 1
    released = False

    def restore() -> None:
        nonlocal released
        if released:
            return
        released = True
        _state["holders"] -= 1
        if _state["holders"] == 0:
            _give_back()

    return restore


def _give_back() -> None:
    if _state["env"] is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = _state["env"]
    for lib, threads in zip(_state["libs"], _state["threads"]):
        lib.set(threads)


def _restore_in_child() -> None:
    if _state["holders"]:
        _state["holders"] = 0  # the child serves nothing
        _give_back()


def blas_threads() -> int:
    """The most threads a loaded OpenBLAS of this process uses now (0: none loaded); safe in a
    forked child once :func:`single_threaded_blas_until_fork` has run (no symbol lookups)."""
    libs = _state.get("libs")
    if libs is None:
        libs = _loaded_openblas()
    return max([lib.get() for lib in libs] or [0])


__all__ = ["blas_threads", "single_threaded_blas_until_fork"]
