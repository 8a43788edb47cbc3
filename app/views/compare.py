"""Two runs side by side: a run and its re-run with both classes re-encoded (data checks,
"Re-run with both classes re-encoded"), so the analyst sees what the detector loses when a file
confound is taken away.

It shows the two runs' held-out metrics with their 95% intervals, the per-generator AUC, the
flagged checks, and per cell of the first run how its images fall in the second (the share
predicted fake in each). The figures come from ``pipeline.checks.validity.compare_rows`` and
``cell_shift_rows`` (``pipeline compare`` prints the same rows).
"""
from __future__ import annotations

from dash import Input, Output, State, html, no_update

from pipeline.checks.validity import cell_shift_rows, compare_rows
from pipeline.store.run_store import RunStore

from app.state import ids
from app.state.context import AppContext

MAX_CELLS = 40  # cells listed (most images first)
LABELS = {"accuracy": "accuracy", "real_accuracy": "accuracy on reals", "fake_accuracy": "accuracy on fakes",
          "ap": "AP", "auc": "AUC", "n": "images"}


def layout() -> html.Details:
    return html.Details(id=ids.COMPARE_PANEL, className="fx-panel fx-compare", style={"display": "none"}, children=[
        html.Summary("Two runs side by side", className="fx-panel-title"),
        html.Div(id=ids.COMPARE_CONTENT),
        html.Button("Close", id=ids.COMPARE_CLOSE, n_clicks=0),
    ])


def _value(v, ci=None, key="") -> str:
    if v is None or v != v:
        return "–"
    if key == "n":
        return f"{v}"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _share(v) -> str:
    return "–" if v is None else f"{v:.0%}"


def comparison(ctx: AppContext, run_a: str, run_b: str) -> list:
    """The compare view's content for two runs (an error line when one cannot be read)."""
    views = [ctx.run(run_a), ctx.run(run_b)]
    if any(v is None for v in views):
        missing = [r for r, v in zip((run_a, run_b), views) if v is None]
        return [html.Div(f"Cannot compare: run {', '.join(missing)} cannot be opened", className="fx-error")]
    rows = compare_rows(views[0].meta, views[1].meta)
    name_a, name_b = rows["names"]
    head = html.Tr([html.Th(""), html.Th(name_a), html.Th(name_b)])
    body = [html.Tr([html.Td("re-encoding"), html.Td(rows["reencode"][0]), html.Td(rows["reencode"][1])])]
    body += [html.Tr([html.Td(f"held-out {LABELS.get(r['key'], r['key'])}"),
                      html.Td(_value(r["a"], r["ci_a"], r["key"])), html.Td(_value(r["b"], r["ci_b"], r["key"]))],
                     **{"data-key": r["key"]}) for r in rows["metrics"]]
    body += [html.Tr([html.Td(f"{r['generator']}: AUC", className="fx-compare-gen"),
                      html.Td(_value(r["a"], r["ci_a"])), html.Td(_value(r["b"], r["ci_b"]))])
             for r in rows["generators"]]
    body.append(html.Tr([html.Td("flagged checks"), html.Td(str(len(rows["flags"][0]))),
                         html.Td(str(len(rows["flags"][1])))]))
    out = [html.Div("Held-out figures with their 95% bootstrap intervals; the second run saw the same "
                    "images, both classes re-encoded alike, so a file confound cannot help it.",
                    className="fx-muted"),
           html.Table([html.Thead(head), html.Tbody(body)], className="fx-metrics-table fx-compare-table")]
    for name, flags in zip((name_a, name_b), rows["flags"]):
        out.append(html.Div([html.B(f"{name}: "), f"{len(flags)} flagged" if flags else "nothing flagged",
                             html.Ul([html.Li(f) for f in flags]) if flags else None],
                            className="fx-compare-flags " + ("fx-warning" if flags else "fx-muted")))
    cells = cell_shift_rows(RunStore(views[0].path).read_records(), RunStore(views[1].path).read_records())
    cells = sorted(cells, key=lambda c: -c["n"])[:MAX_CELLS]
    out.append(html.Div(f"The cells of {name_a}: how their images are called in {name_b} (share predicted "
                        f"fake; images matched by path)", className="fx-muted"))
    out.append(html.Table([
        html.Thead(html.Tr([html.Th("cell"), html.Th("images (real / fake)"), html.Th(f"fake in {name_a}"),
                            html.Th(f"fake in {name_b}")])),
        html.Tbody([html.Tr([html.Td(str(c["cell"])), html.Td(f"{c['n']} ({c['n_real']} / {c['n_fake']})"),
                             html.Td(_share(c["fake_share_a"])), html.Td(_share(c["fake_share_b"]))])
                    for c in cells])], className="fx-metrics-table fx-compare-cells"))
    return out


def register(app, ctx: AppContext) -> None:
    """Called by ``app.views.checks.register`` (the compare view is opened from the data checks)."""
    @app.callback(Output(ids.COMPARE_PANEL, "style"), Output(ids.COMPARE_PANEL, "open"),
                  Output(ids.COMPARE_CONTENT, "children"),
                  Input(ids.COMPARE_SHOW, "n_clicks"), Input(ids.COMPARE_CLOSE, "n_clicks"),
                  State(ids.STORE_COMPARE, "data"), prevent_initial_call=True)
    def _compare(show, _close, pair):
        from dash import ctx as dash_ctx

        if dash_ctx.triggered_id == ids.COMPARE_CLOSE or not show or not pair:
            return {"display": "none"}, False, no_update
        return {}, True, comparison(ctx, pair["a"], pair["b"])
