"""The app's state in the URL query string, so a view can be shared as a link.

``?run=<run id>&cell=<cell id>&sel=3,7,10-14&view=concepts``: the run (or ``RUN@SET``, an applied
set), the cell open in the image view (or an image set's key ``set:<hash>``, :mod:`app.state.imagesets`),
the selected images (indices; runs of consecutive ones as ranges) and which of the image /
concept views is shown. Only ids travel; everything else is read from the run folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, urlencode

from app.state.imagesets import cell_key

MAX_SELECTION = 20000  # ids kept from a URL (a longer list is cut, not an error)
VIEWS = ("images", "concepts")


@dataclass(frozen=True)
class ViewState:
    run: str | None = None
    cell: int | str | None = None  # a cell id, or an image set's key
    sel: tuple[int, ...] = field(default_factory=tuple)
    view: str = "images"


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def format_ids(ids) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (sorted, duplicates dropped)."""
    ids = sorted({int(i) for i in ids})
    parts, start, prev = [], None, None
    for i in ids:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts)


def parse_ids(text: str | None) -> tuple[int, ...]:
    """Inverse of :func:`format_ids`; malformed parts are ignored, negative ids dropped."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        a, b = _int_or_none(lo), _int_or_none(hi) if sep else _int_or_none(lo)
        if a is None or b is None or a < 0 or b < a:
            continue
        out.extend(range(a, min(b, a + MAX_SELECTION) + 1))
        if len(out) >= MAX_SELECTION:
            break
    return tuple(sorted(set(out)))[:MAX_SELECTION]


def parse_search(search: str | None) -> ViewState:
    """Query string (with or without the leading ``?``) -> :class:`ViewState`."""
    q = parse_qs((search or "").lstrip("?"))

    def first(key):
        return q.get(key, [None])[0]

    view = first("view")
    return ViewState(run=first("run") or None, cell=cell_key(first("cell")),
                     sel=parse_ids(first("sel")), view=view if view in VIEWS else "images")


def format_search(state: ViewState) -> str:
    """:class:`ViewState` -> query string with a leading ``?`` (empty parts left out)."""
    params = {}
    if state.run:
        params["run"] = state.run
    if state.cell is not None:
        params["cell"] = str(state.cell)  # "set:<hash>" is sent as set%3A<hash>
    if state.sel:
        params["sel"] = format_ids(state.sel)
    if state.view != "images":
        params["view"] = state.view
    return "?" + urlencode(params, safe=",-") if params else ""


def with_run(state: ViewState, run: str | None) -> ViewState:
    """A different run starts with no cell and no selection."""
    return state if run == state.run else ViewState(run=run, view=state.view)


def with_cell(state: ViewState, cell: int | None) -> ViewState:
    """A different cell starts with no selection."""
    return state if cell == state.cell else replace(state, cell=cell, sel=())
