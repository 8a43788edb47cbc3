"""The shell: navbar with the run picker and status, the stand-in notice, the "new run" and
"score a folder" panels, run metrics, the data checks and the cross-generator matrix, the three
panels (representation | images/concepts | notes), the attention panel, and the app-wide stores
(ids only, never arrays) plus the URL location."""
from __future__ import annotations

from dash import dcc, html

from app.state import ids
from app.state.context import AppContext
from app.views import applied, atlas, attention, checks, compare, finder, images, matrix, notes, representation, shell, viewer


def build(ctx: AppContext) -> html.Div:
    """The page (built per page load, so the run list is fresh)."""
    return html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        # keyboard users reach the image grid in one step, past the filters and the checks
        html.A("Skip to the image grid", href=f"#{ids.IMAGES_GRAPH}", className="fx-skip-link"),
        dcc.Store(id=ids.STORE_RUN), dcc.Store(id=ids.STORE_CELL),
        dcc.Store(id=ids.STORE_SEL), dcc.Store(id=ids.STORE_VIEW),
        dcc.Store(id=ids.STORE_VIEWER), dcc.Store(id=ids.STORE_FILTER), dcc.Store(id=ids.STORE_HIGHLIGHT),
        shell.navbar(ctx),
        html.Div(id=ids.FALLBACK_NOTICE, className="fx-notice", style={"display": "none"}),
        shell.new_run_panel(ctx),
        applied.score_panel(ctx),
        html.Div(id=ids.METRICS, className="fx-metrics"),
        checks.layout(),
        compare.layout(),
        matrix.layout(),
        finder.filter_bar(),
        html.Div(className="fx-main", children=[
            representation.layout(),
            images.layout(),
            notes.layout(),
            finder.table_panel(),  # under the map and the images (style.css: .fx-cells-panel)
        ]),
        attention.layout(),
        atlas.layout(),
        viewer.layout(),
    ])
