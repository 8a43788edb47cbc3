"""Pure figure builder of the image viewer: one picture at full resolution on pan/zoom axes.

The picture is a plotly layout image on axes measured in the picture's own pixels (x to the
right, y = minus the row, so the picture sits in y in [-height, 0] the right way up, as in the
image grid), which keeps its aspect ratio (``scaleanchor``; the ranges widen to fill the graph,
so a zoomed picture uses all of it) and lets the analyst pan (drag), zoom (wheel, box) and reset
(double click). A relevance layer (``app.files.viewer_files``) is a second
layout image over the part of the picture the model saw (``box``); that square is outlined, and
while a map is shown the border outside it is shaded: the model never saw it.
"""
from __future__ import annotations

import plotly.graph_objects as go

BACKGROUND = "rgb(43,47,54)"
SHADE = "rgba(20,20,20,0.6)"


def image_figure(source: str, width: int, height: int, *, layer: str | None = None,
                 opacity: float = 0.6, box: tuple[float, float, float] | None = None,
                 uirevision: str | None = None, linked: bool = False, outline: str | None = None) -> go.Figure:
    """The picture at ``source`` (``width`` x ``height`` pixels, upright) on pan/zoom axes.

    Parameters
    ----------
    layer : URL of a transparent map to lay over ``box``, or None.
    opacity : the layer's opacity (0..1).
    box : ``(left, top, side)`` of the square the model saw, in the picture's pixels
        (:func:`pipeline.represent.originals.model_input_box`); outlined when it is not the whole picture.
    uirevision : kept while the same picture is shown, so toggling the map keeps the zoom.
    linked : the picture shows the same region as the viewer's other one, so their pan and zoom
        are linked (``assets/viewer.js`` reads ``layout.meta.linked``; other pictures stay apart).
    outline : URL of a transparent layer outlining the subject, laid over ``box`` above the map.
    """
    w, h = float(width), float(height)
    images = [dict(source=source, xref="x", yref="y", x=0, y=0, sizex=w, sizey=h, xanchor="left",
                   yanchor="top", sizing="stretch", layer="below")]
    shapes = []
    if box is not None:
        left, top, side = box
        if layer:
            images.append(dict(source=layer, xref="x", yref="y", x=left, y=-top, sizex=side, sizey=side,
                               xanchor="left", yanchor="top", sizing="stretch", layer="above",
                               opacity=float(opacity), name="relevance"))
        if outline:
            images.append(dict(source=outline, xref="x", yref="y", x=left, y=-top, sizex=side, sizey=side,
                               xanchor="left", yanchor="top", sizing="stretch", layer="above",
                               opacity=1.0, name="subject"))
        if side < max(w, h):  # the model saw a centre square only: outline it, shade the rest
            if layer:
                for x0, y0, x1, y1 in _outside(w, h, left, top, side):
                    shapes.append(dict(type="rect", x0=x0, x1=x1, y0=-y0, y1=-y1, line=dict(width=0),
                                       fillcolor=SHADE, layer="above"))
            shapes.append(dict(type="rect", x0=left, x1=left + side, y0=-top, y1=-(top + side),
                               line=dict(color="white", width=1.5, dash="dash"), layer="above"))
    fig = go.Figure()
    fig.update_layout(
        images=images, shapes=shapes, meta={"width": w, "height": h, "linked": bool(linked)},
        xaxis=dict(range=[0, w], visible=False, constrain="range"),
        yaxis=dict(range=[-h, 0], visible=False, scaleanchor="x", scaleratio=1, constrain="range"),
        margin=dict(l=0, r=0, t=0, b=0), dragmode="pan", hovermode=False, showlegend=False,
        plot_bgcolor=BACKGROUND, paper_bgcolor=BACKGROUND, uirevision=uirevision,
        modebar=dict(bgcolor="rgba(255,255,255,0.85)", color="rgb(60,60,60)",
                     activecolor="rgb(31,111,235)"))
    return fig


def _outside(w: float, h: float, left: float, top: float, side: float) -> list[tuple]:
    """Rectangles ``(x0, y0, x1, y1)`` (rows downwards) covering the picture outside the box."""
    parts = []
    if left > 0:
        parts += [(0, 0, left, h), (left + side, 0, w, h)]
    if top > 0:
        parts += [(0, 0, w, top), (0, top + side, w, h)]
    return parts
