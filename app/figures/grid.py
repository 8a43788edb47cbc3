"""The image view's figure: the cell's thumbnails on a grid.

The cell's framed thumbnails are one sprite picture (a layout image); an invisible
``scattergl`` marker per thumbnail carries hover text and box/lasso selection.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

GRID_TRACE_NAME = "images"  # the selectable marker layer (assets/viewer.js finds it by this name)
GRID_TRACES = (GRID_TRACE_NAME,)  # the grid figure's traces by name, in order (for a ``dash.Patch``)


def image_grid_figure(grid: dict, sprite_url: str, hover: list[str],
                      selected: list[int] | None = None, highlighted: list[int] | None = None,
                      highlight_colour: str | None = None) -> go.Figure:
    """The cell's sprite on a grid, with one invisible selectable marker per thumbnail.

    Parameters
    ----------
    grid : dict
        ``rows``, ``cols``, ``order`` (slot -> image index, -1 empty; reading order).
    sprite_url : str
        URL of the sprite picture.
    hover : list of str
        Hover text per *filled slot*, in slot order (shown by the app's tooltip, not by plotly).
    selected : list of int, optional
        Image indices to show as selected (outlined).
    highlighted : list of int, optional
        Image indices to highlight (dotted outlines: e.g. a concept's images).
    highlight_colour : str, optional
        Colour of those outlines (a concept's own colour); default :data:`HIGHLIGHT_STYLE`'s.
    """
    rows, cols = int(grid["rows"]), int(grid["cols"])
    order = np.asarray(grid["order"], dtype=np.int64)
    slots = np.flatnonzero(order >= 0)
    idx = order[slots]
    px = (slots % cols + 0.5).astype(np.float32)
    py = (-(slots // cols) - 0.5).astype(np.float32)  # row 0 at the top: y = 0 .. -rows
    marker_px = max(4, min(22, int(600 / max(cols, 1) * 0.5)))
    sel = selected_positions(idx, selected)
    fig = go.Figure(go.Scattergl(
        x=px, y=py, mode="markers", customdata=idx.tolist(), text=hover, name=GRID_TRACE_NAME,
        hoverinfo="none",  # the app's tooltip shows the thumbnail and this text
        marker=dict(size=marker_px, color="rgba(255,255,255,0)", symbol="square"),
        # a selection is drawn as outlines around the tiles (selection_shapes), never over them
        selected=dict(marker=dict(color="rgba(0,0,0,0)")),
        unselected=dict(marker=dict(opacity=0)),
        selectedpoints=sel))
    fig.update_layout(
        images=[dict(source=sprite_url, xref="x", yref="y", x=0, y=0, sizex=cols, sizey=rows,
                     xanchor="left", yanchor="top", sizing="stretch", layer="below")],
        shapes=(selection_shapes(grid, selected)
                + selection_shapes(grid, highlighted, highlight_style(highlight_colour))),
        xaxis=dict(range=[0, cols], showgrid=False, zeroline=False, showticklabels=False,
                   constrain="domain"),
        yaxis=dict(range=[-rows, 0], showgrid=False, zeroline=False, showticklabels=False,
                   scaleanchor="x", scaleratio=1, constrain="domain"),
        margin=dict(l=4, r=4, t=30, b=4), dragmode="select", hovermode="closest",
        plot_bgcolor="rgb(250,250,250)", paper_bgcolor="white", showlegend=False,
        uirevision=f"{grid.get('run_id')}-{grid.get('cell')}")
    return fig


SELECTION_STYLE = dict(color="#ffd60a", width=3)  # selected tiles: apart from the green/red frames
HIGHLIGHT_STYLE = dict(color="#9c27b0", width=3, dash="dot")  # highlighted images (default colour)
MAX_OUTLINES = 1000  # outlines drawn at most (a larger selection still selects every image)


def highlight_style(colour: str | None = None) -> dict:
    """Line of the highlight outlines, in ``colour`` (a concept's, from
    :mod:`app.figures.concept_palette`) when given."""
    return {**HIGHLIGHT_STYLE, "color": colour} if colour else HIGHLIGHT_STYLE


def selection_shapes(grid: dict, images: list[int] | None, line: dict = SELECTION_STYLE) -> list[dict]:
    """Outlines around the tiles of ``images`` (layout shapes in the grid's data units), so the
    pictures themselves stay visible."""
    if not images:
        return []
    cols = int(grid["cols"])
    want = set(int(i) for i in images)
    slots = [s for s, i in enumerate(grid["order"]) if i in want][:MAX_OUTLINES]
    inset = 0.03 if line is SELECTION_STYLE else 0.1  # a highlight inside a selection outline
    return [dict(type="rect", xref="x", yref="y", x0=s % cols + inset, x1=s % cols + 1 - inset,
                 y0=-(s // cols) - inset, y1=-(s // cols) - 1 + inset, layer="above", line=line)
            for s in slots]


def selected_positions(slot_indices, selected: list[int] | None) -> list[int] | None:
    """Marker positions (in slot order) of the ``selected`` image indices; None = no selection."""
    if not selected:
        return None
    want = set(int(i) for i in selected)
    return [p for p, i in enumerate(np.asarray(slot_indices).tolist()) if i in want]
