"""The lab's data folders: which folders and manifests a shared server may read for a new run.

A shared server (``server.mode: shared``) reads new data sets only under its *data roots*:
``server.data_roots`` plus the folders of ``$FAXPLAINER_DATA_ROOTS`` (separated by
``os.pathsep``). A path is allowed when its resolved form (every link followed) lies under a
resolved root, so a link inside a root that points elsewhere is refused, as the scan already
refuses links leaving a data set (:mod:`pipeline.data.scan`). A CSV manifest under a root is refused
as a whole when one of its rows points outside the roots. Local mode keeps free paths.

:func:`check_data_path` is the rule (run before anything is scanned, by whoever runs the job);
:func:`data_choices` lists the data sets under the roots for the app's picker, bounded in depth,
folders visited and entries examined so that a huge tree cannot stall a page.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.config import Config, resolve_path

LABEL_DIRS = ("0_real", "1_fake")  # as pipeline.data.scan.LABEL_DIRS (not imported: that pulls in PIL)
MANIFEST_NAME = "manifest.csv"
MANIFEST_HEAD_BYTES = 4096
LAYOUT_DEPTH = 3  # 0_real/1_fake may sit under [generator/][category/] of a data set


class DataRootError(ValueError):
    """A path a shared server may not read; the message names the allowed roots."""


def data_roots(cfg: Config) -> tuple[Path, ...]:
    """The resolved data roots of ``cfg``: ``server.data_roots`` then ``$FAXPLAINER_DATA_ROOTS``.

    Relative roots are relative to the repository; duplicates are dropped, order kept.
    """
    env = [p for p in os.environ.get("FAXPLAINER_DATA_ROOTS", "").split(os.pathsep) if p.strip()]
    roots: list[Path] = []
    for text in (*cfg.server.data_roots, *env):
        root = resolve_path(str(text).strip()).resolve()
        if root not in roots:
            roots.append(root)
    return tuple(roots)


def describe_roots(roots: Sequence[Path]) -> str:
    """The roots in words, for messages."""
    if not roots:
        return ("no data folders are configured for this server (server.data_roots or "
                "$FAXPLAINER_DATA_ROOTS)")
    return "the data folders of this server are " + ", ".join(str(r) for r in roots)


def root_warnings(cfg: Config) -> list[str]:
    """What a shared server's operator should hear at start about its data roots."""
    roots = data_roots(cfg)
    if not roots:
        return ["no data folders configured (server.data_roots or $FAXPLAINER_DATA_ROOTS): new runs "
                "can only use the configured data set or the demo set"]
    return [f"data folder {r} is not a folder; nothing under it can be offered" for r in roots
            if not r.is_dir()]


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def check_data_path(path: str | Path, roots: Sequence[Path]) -> Path:
    """The resolved ``path`` if a shared server may read it, else :class:`DataRootError`.

    ``path`` (a folder or a ``.csv`` manifest) must exist and resolve under one of the resolved
    ``roots``. A manifest (given, or the ``manifest.csv`` of a folder) must not list a row that
    resolves outside the roots. Nothing but the manifest itself is read.

    Raises
    ------
    DataRootError
        The path is outside the roots (or leaves them through a link), does not exist, or is a
        manifest with a row outside the roots. The message names the allowed roots.
    """
    roots = tuple(Path(r).resolve() for r in roots)
    given = resolve_path(str(path).strip())
    resolved = given.resolve()
    if not _under(resolved, roots):
        lexical = Path(os.path.normpath(given))
        via = f" (through a link to {resolved})" if _under(lexical, roots) else ""
        raise DataRootError(f"{given}{via} is outside the data folders this server may read; "
                            f"{describe_roots(roots)}")
    if not resolved.exists():
        raise DataRootError(f"{given} does not exist; {describe_roots(roots)}")
    manifest = resolved / MANIFEST_NAME if resolved.is_dir() else resolved
    if manifest.suffix.lower() == ".csv" and manifest.is_file():
        _check_manifest_rows(manifest, roots)
    return resolved


def _check_manifest_rows(manifest: Path, roots: tuple[Path, ...]) -> None:
    """Refuse ``manifest`` if a row's path resolves outside ``roots`` (rows are relative to the
    manifest's folder, as :func:`pipeline.data.scan.scan` reads them).

    Each distinct folder is resolved once and each file checked for being a link (one ``lstat``),
    so a 100,000-row manifest costs about as much as reading it.
    """
    prefixes = tuple(str(r).rstrip(os.sep) + os.sep for r in roots)

    def inside(p: str) -> bool:
        return (p + os.sep).startswith(prefixes)

    base = str(manifest.parent)
    folders: dict[str, str] = {}
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [c.strip() for c in next(reader, [])]
            if "path" not in header:
                return  # not a manifest the scan can use; it reports that itself
            column = header.index("path")
            for line_no, row in enumerate(reader, start=2):
                rel = row[column].strip() if len(row) > column else ""
                if not rel:
                    continue
                joined = os.path.join(base, rel)  # an absolute row stays absolute
                if ".." in rel.split("/"):  # links before a '..' change where it leads
                    target = str(Path(joined).resolve())
                else:
                    folder, name = os.path.split(joined)
                    if folder not in folders:
                        folders[folder] = str(Path(folder).resolve())
                    target = os.path.join(folders[folder], name)
                    if os.path.islink(target):
                        target = str(Path(target).resolve())
                if not inside(target):
                    raise DataRootError(f"manifest {manifest} line {line_no}: {rel!r} points outside "
                                        f"the data folders this server may read; "
                                        f"{describe_roots(roots)}")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataRootError(f"manifest {manifest} cannot be read: {e}") from e


def allowed_data_path(cfg: Config, text: str | None) -> str:
    """``text`` as a new run may use it under ``cfg``: unchanged in local mode; in shared mode an
    empty text (the configured data) or the resolved path after :func:`check_data_path`."""
    text = (text or "").strip()
    if cfg.server.mode != "shared" or not text:
        return text
    return str(check_data_path(text, data_roots(cfg)))


# -- listing the data sets under the roots -----------------------------------------------------------
@dataclass(frozen=True)
class DataChoice:
    path: Path  # resolved folder or manifest
    kind: str  # "folder" | "manifest"

    @property
    def label(self) -> str:
        return f"{self.path}  ({'0_real/1_fake folder' if self.kind == 'folder' else 'CSV manifest'})"


@dataclass(frozen=True)
class DataChoices:
    items: tuple[DataChoice, ...]
    truncated: bool  # a bound was reached: some data sets may be missing from ``items``
    missing_roots: tuple[Path, ...]  # configured roots that are not folders


def _is_manifest(path: Path) -> bool:
    """True when the first line of ``path`` names the ``path`` and ``label`` columns."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(MANIFEST_HEAD_BYTES).decode("utf-8-sig", errors="replace")
    except OSError:
        return False
    first = next(csv.reader(io.StringIO(head.splitlines()[0] if head else "")), [])
    columns = {c.strip().lower() for c in first}
    return {"path", "label"} <= columns


def data_choices(roots: Sequence[Path], max_depth: int = 4, max_items: int = 200,
                 max_dirs: int = 2000, max_entries: int = 50_000) -> DataChoices:
    """The data sets under ``roots``: folders in the 0_real/1_fake layout and CSV manifests.

    A folder counts when it holds a ``manifest.csv`` or a ``0_real``/``1_fake`` folder up to
    :data:`LAYOUT_DEPTH` levels down (``[generator/][category/]0_real``). Folders are walked
    breadth first, never through links and never into a label folder (those hold the images);
    the walk stops at ``max_depth`` levels below a root, ``max_dirs`` folders, ``max_entries``
    directory entries examined, or ``max_items`` data sets, and then says it was truncated.
    """
    roots = tuple(Path(r).resolve() for r in roots)
    found: dict[Path, str] = {}
    missing = tuple(r for r in roots if not r.is_dir())
    budget = {"dirs": max_dirs, "entries": max_entries}
    truncated = False
    queue: list[tuple[Path, Path, int]] = [(r, r, 0) for r in roots if r.is_dir()]
    while queue:
        root, folder, depth = queue.pop(0)
        if budget["dirs"] <= 0:
            truncated = True
            break
        budget["dirs"] -= 1
        subdirs, complete = _list_folder(folder, budget)
        truncated |= not complete
        for entry, is_dir in subdirs:
            if is_dir and entry.name in LABEL_DIRS:
                for up in range(1, LAYOUT_DEPTH + 1):  # the folder and up to two above it
                    candidate = entry.parents[up - 1]
                    if candidate != root and root not in candidate.parents:
                        break
                    found.setdefault(candidate, "folder")
            elif is_dir and depth + 1 <= max_depth:
                queue.append((root, entry, depth + 1))
            elif not is_dir and entry.name == MANIFEST_NAME:
                found.setdefault(folder, "folder")
            elif not is_dir and entry.suffix.lower() == ".csv" and _is_manifest(entry):
                found.setdefault(entry, "manifest")
        if len(found) >= max_items:
            truncated = bool(queue) or truncated
            break
    items = tuple(DataChoice(p, k) for p, k in sorted(found.items())[:max_items])
    return DataChoices(items, truncated or len(found) > max_items, missing)


def _list_folder(folder: Path, budget: dict) -> tuple[list[tuple[Path, bool]], bool]:
    """(entries, complete): the sub-folders (not links) and files of ``folder`` that matter."""
    out: list[tuple[Path, bool]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if budget["entries"] <= 0:
                    return out, False
                budget["entries"] -= 1
                try:
                    if entry.is_dir(follow_symlinks=False):
                        out.append((Path(entry.path), True))
                    elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(".csv"):
                        out.append((Path(entry.path), False))
                except OSError:
                    continue
    except OSError:
        return out, True  # an unreadable folder holds nothing we can offer
    out.sort()
    return out, True
