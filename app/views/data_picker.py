"""The "New run" data picker of a shared server: a list of the data sets under its data roots
instead of a free path (:mod:`pipeline.data.roots`; the job checks the path again, since the
browser can send anything)."""
from __future__ import annotations

from dash import dcc, html

from pipeline.config import Config
from pipeline.data.roots import data_choices, data_roots, describe_roots

from app.state import ids


def data_picker(cfg: Config) -> html.Div:
    """Label, dropdown (value: a resolved path, or "" for the configured data / demo set) and a
    line naming the roots, what is missing and whether the list was cut short."""
    roots = data_roots(cfg)
    choices = data_choices(roots)
    configured = cfg.data.manifest or cfg.data.root
    options = [{"label": f"the configured data set ({configured})" if configured
                else "the demo set (built on first use)", "value": ""}]
    options += [{"label": c.label, "value": str(c.path)} for c in choices.items]
    notes = [describe_roots(roots).capitalize() + "."]
    if choices.missing_roots:
        notes.append(f"Not found: {', '.join(str(r) for r in choices.missing_roots)}.")
    if choices.truncated:
        notes.append(f"Only the first {len(choices.items)} data sets found are listed; point "
                     f"server.data_roots closer to the data to see the others.")
    return html.Div([
        html.Label("Data set (a folder in the 0_real/1_fake layout or a CSV manifest under this "
                   "server's data folders)"),
        dcc.Dropdown(id=ids.NEWRUN_PATH, options=options, value="", clearable=False,
                     className="fx-data-picker"),
        html.Div(" ".join(notes), className="fx-muted"),
    ])
