"""The cross-generator matrix of a run (``pipeline.generalise.run_matrix``) as a heatmap figure.

Two heatmaps side by side, one colour scale: *trained on one* (row = the generator whose training
images the head saw, column = the generator whose held-out images it was tested on; the diagonal,
outlined, is the in-distribution figure) and *trained on all but one* (row = the generator left
out; its outlined diagonal cell is the unseen-generator case, Ojha et al. 2023). Each cell shows
the chosen figure (AUC or accuracy); the scale is white at 0.5 (chance for AUC) and green towards
1, purple towards 0; a cell without held-out images, or a row whose head could not be trained,
says so. Axes are numbered (tick labels name the generators), so that a click reports the row and
column as integers: :func:`pair_at` turns a click back into (table, train, test).

Nothing here imports Dash.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TABLES = ("one", "all_but_one")  # as pipeline.generalise.crossgen.TABLES (not imported: that pulls in torch)
FIGURES = {"auc": "AUC", "accuracy": "accuracy"}
TITLES = {"one": "trained on one generator (row) · tested on each (column)",
          "all_but_one": "trained on all but the row's generator · tested on each"}
COLOURS = [[0.0, "rgb(142,1,82)"], [0.25, "rgb(222,119,174)"], [0.5, "rgb(247,247,247)"],
           [0.75, "rgb(127,188,65)"], [1.0, "rgb(39,100,25)"]]  # PiYG: white = 0.5
DIAGONAL = dict(color="rgb(30,30,30)", width=2)


def pair_title(table: str, train: str, test: str) -> str:
    """The words of one pair: ``misclassified by the head trained on gan, tested on diffusion
    (frames: the run's own head)``; the image grid frames right and wrong by the run's head, which
    may get some of these images right, so the title says whose mistakes they are."""
    trained = f"all but {train}" if table == "all_but_one" else train
    return (f"misclassified by the head trained on {trained}, tested on {test} "
            f"(frames: the run's own head)")


def pair_at(matrix: dict, curve: int, x, y) -> tuple[str, str, str] | None:
    """(table, train generator, test generator) of a click on heatmap ``curve`` at column ``x``,
    row ``y``; None when it names no pair."""
    gens = matrix.get("generators") or []
    try:
        table, col, row = TABLES[int(curve)], int(round(float(x))), int(round(float(y)))
    except (TypeError, ValueError, IndexError):
        return None
    if not (0 <= col < len(gens) and 0 <= row < len(gens)):
        return None
    return table, gens[row], gens[col]


def _cell_words(table: str, train: str, test: str, cell: dict | None, skipped: str | None) -> tuple[str, str]:
    """(text in the cell, hover text) of one pair."""
    trained = f"all but {train}" if table == "all_but_one" else train
    if skipped is not None:
        return "not trained", f"trained on {trained}: not trained ({skipped})"
    if cell is None:
        return "–", f"{test} has no held-out images"
    auc, acc = cell.get("auc"), cell.get("accuracy")

    def f(v):
        return "–" if v is None else f"{v:.3f}"

    def ci(key):  # its 95% bootstrap interval (matrices kept before the intervals have none)
        lo_hi = (cell.get("ci95") or {}).get(key)
        return f" [{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]" if lo_hi else ""

    hover = (f"trained on {trained}, tested on {test}<br>AUC {f(auc)}{ci('auc')} · accuracy {f(acc)}{ci('accuracy')} (real "
             f"{f(cell.get('real_accuracy'))}, fake {f(cell.get('fake_accuracy'))})<br>"
             f"{cell.get('n_test', 0)} held-out images ({cell.get('n_real', 0)} real, {cell.get('n_fake', 0)} "
             f"fake) · {cell.get('n_misclassified', 0)} misclassified"
             + ("<br>click to see them in the image view" if cell.get("n_misclassified") else ""))
    return "", hover


def matrix_figure(matrix: dict, figure: str = "auc") -> go.Figure:
    """The two heatmaps of ``matrix`` showing ``figure`` (``"auc"`` or ``"accuracy"``)."""
    figure = figure if figure in FIGURES else "auc"
    gens = list(matrix.get("generators") or [])
    n = len(gens)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=[TITLES[t] for t in TABLES])
    for k, table in enumerate(TABLES):
        rows = matrix.get(table) or {}
        skipped = (matrix.get("skipped") or {}).get(table) or {}
        z, text, hover = [], [], []
        for train in gens:
            row = rows.get(train)
            zr, tr, hr = [], [], []
            for test in gens:
                cell = None if row is None else row.get(test)
                why = (skipped.get(train) or "no head") if row is None else None
                words, tip = _cell_words(table, train, test, cell, why)
                value = None if cell is None else cell.get(figure)
                zr.append(value)
                tr.append(f"{value:.3f}" if value is not None else words)
                hr.append(tip)
            z.append(zr)
            text.append(tr)
            hover.append(hr)
        fig.add_trace(go.Heatmap(
            z=z, x=list(range(n)), y=list(range(n)), text=text, texttemplate="%{text}",
            textfont=dict(size=12), hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
            zmin=0, zmax=1, colorscale=COLOURS, showscale=k == 1, xgap=2, ygap=2,
            name=TITLES[table],
            colorbar=dict(title=dict(text=FIGURES[figure], side="right"), thickness=12, len=0.9,
                          tickvals=[0, 0.25, 0.5, 0.75, 1])), row=1, col=k + 1)
        axis = "" if k == 0 else "2"
        ticks = dict(tickmode="array", tickvals=list(range(n)), ticktext=gens, tickfont=dict(size=11),
                     showgrid=False, zeroline=False)
        fig.update_layout(**{f"xaxis{axis}": dict(**ticks, title=dict(text="tested on (held-out images of)",
                                                                      font=dict(size=11)), constrain="domain"),
                             f"yaxis{axis}": dict(**ticks, autorange="reversed", scaleanchor=f"x{axis}",
                                                  title=dict(text="trained on" if k == 0 else "left out",
                                                             font=dict(size=11)))})
        for i in range(n):  # the diagonal: in-distribution (one), the unseen generator (all but one)
            fig.add_shape(type="rect", x0=i - 0.5, x1=i + 0.5, y0=i - 0.5, y1=i + 0.5,
                          xref=f"x{axis}", yref=f"y{axis}", line=DIAGONAL, layer="above")
    fig.update_annotations(font=dict(size=12))
    fig.update_layout(height=max(280, 110 + 46 * n), margin=dict(l=10, r=10, t=36, b=10),
                      plot_bgcolor="white", paper_bgcolor="white", hovermode="closest",
                      clickmode="event", uirevision="matrix")
    return fig
