"""Clear errors for folders that cannot hold the pipeline's files (a file in the way, no
permission, a read-only or full disk), raised before any work is done instead of deep inside it.
"""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path


class StorageError(OSError):
    """A folder cannot be written; the message names the folder, what it is for, and why."""


_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file is in the way (a folder is needed)",
    errno.EEXIST: "a file is in the way (a folder is needed)",
}


def reason(e: OSError) -> str:
    """Words for an ``OSError`` a user can act on."""
    return _WHY.get(e.errno, e.strerror or str(e))


def writable_folder(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and check that a file can be written in it; returns it.

    Parameters
    ----------
    path : the folder.
    what : what it is for, for the message (e.g. ``"cache folder (cache_dir)"``).

    Raises
    ------
    StorageError
        With errno of the cause and a message such as ``"cache folder (cache_dir) /x cannot be
        used: a file is in the way (a folder is needed)"``.
    """
    path = Path(path)
    probe = path / f".write-probe-{uuid.uuid4().hex}"
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise StorageError(e.errno, f"{what} {path} cannot be used: {reason(e)}") from e
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return path
