"""Bits shared by the figures: a blank panel with a message, a concept's profile, and
:func:`trace_index`, how code and tests find a trace (every trace they address has a name)."""
from __future__ import annotations

import plotly.graph_objects as go


def empty_figure(message: str = "") -> go.Figure:
    """Blank axes with a centred message (a panel before anything is chosen)."""
    fig = go.Figure()
    fig.update_layout(
        xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white",
        margin=dict(l=4, r=4, t=4, b=4),
        annotations=[dict(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                          yref="paper", font=dict(size=14, color="grey"))] if message else [])
    return fig


def profile_figure(profile: list[float], colour: str = "rgb(90,90,90)") -> go.Figure:
    """Small bar chart of a concept's profile: the mean value of each of the 16 dimensions over
    the concept's segments (labelled axes, zero line)."""
    k = len(profile)
    fig = go.Figure(go.Bar(x=[f"d{i}" for i in range(k)], y=profile, marker_color=colour,
                           hovertemplate="%{x}: mean %{y:.3f}<extra></extra>"))
    fig.update_layout(margin=dict(l=46, r=4, t=4, b=34), height=150, plot_bgcolor="white",
                      xaxis=dict(tickfont=dict(size=9), title=dict(text="dimension", font=dict(size=10),
                                                                   standoff=2)),
                      yaxis=dict(tickfont=dict(size=9), zeroline=True, zerolinecolor="#8c959f",
                                 title=dict(text="mean value", font=dict(size=10), standoff=2)),
                      bargap=0.15)
    return fig


def trace_index(fig_or_data, name: str) -> int:
    """Index of the trace called ``name`` in a figure (dict or go.Figure), its data list, or a
    sequence of trace names (e.g. :data:`REPRESENTATION_TRACES`)."""
    data = fig_or_data if isinstance(fig_or_data, (list, tuple)) else fig_or_data["data"]
    for i, t in enumerate(data):
        if (t if isinstance(t, str) else t.get("name") if isinstance(t, dict) else t.name) == name:
            return i
    raise KeyError(name)
