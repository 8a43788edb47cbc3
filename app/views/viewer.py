"""Image viewer: one image at full resolution in a dialog, with its facts, its relevance map as an
overlay, its same-source companion side by side, and previous/next within its cell.

What is open is ``STORE_VIEWER`` = ``{"index": i, "map": m, "pair": j}`` (None = closed): ``m`` is
the overlay (``"aggregate"``, a dimension ``k``, or None = off), ``j`` the image shown side by side
(None = the best match, -1 = none, -2 / -3 = a demo fake's source region / the difference to it).
:func:`navigate` is its one writer; it is opened by

* a click on a thumbnail of the image grid (``IMAGES_GRAPH.clickData``),
* Enter on a thumbnail (``assets/viewer.js`` moves a cursor over the grid with the arrow keys and
  sets ``VIEWER_KEY``),
* any component with id ``ids.viewer_open(i, m)`` (:func:`open_button`): another view opens the
  viewer on image ``i`` with map ``m`` by placing such a button, and needs no callback of its own.

The dialog is ``dash_bootstrap_components.Modal`` (react-bootstrap): it gives ``role="dialog"``,
``aria-modal``, a focus trap, Esc to close and focus returned to the thumbnail grid on close, which
a hand-made overlay would have to reimplement; its look comes from ``assets/style.css`` (no
Bootstrap stylesheet: the app runs offline and keeps its own style).

The picture is the original file (:func:`app.files.urls.image`, converted once when a browser cannot
show it: :mod:`pipeline.represent.originals`) on a plotly figure with wheel zoom and drag pan
(:mod:`app.figures.viewer`). The relevance maps were computed on the model input, the centre square
of the original (:func:`pipeline.represent.originals.model_input_box`), so the map is laid over that square
and the border outside it is shaded and said to be unseen. A map not drawn yet is computed by a
background job for this one image (:class:`app.jobs.panel.JobView`); a drawn one shows at once.

Pairs are honest (issue 23): a picture side by side follows the main one's pan and zoom only when
the data set's ``provenance.csv`` says it shows the same region (:mod:`pipeline.data.provenance`);
another crop of the same photo, or a same-source image of unknown region, is captioned so and
keeps its own view. A demo fake is offered the region of its source photo it was made from.
"""
from __future__ import annotations

from pathlib import Path

import dash_bootstrap_components as dbc
from dash import ALL, ClientsideFunction, Input, Output, State, callback_context, dcc, html, no_update

from pipeline.data import provenance
from pipeline.data.scan import BadImageError, PathRefused
from pipeline.represent.originals import inspect, model_input_box

from app.files import artifacts, urls, viewer_files

from app.state import ids
from app.state.context import AppContext
from app.figures.common import empty_figure
from app.jobs.panel import Job, JobPanel, JobView, Ready
from app.state.runs import LABEL_WORDS
from app.figures.viewer import image_figure
from app.files.viewer_files import AGGREGATE

MAX_PAIRS = 12  # same-source images listed in the strip
# Pictures of the side-by-side slot that are not images of the run ("pair" in STORE_VIEWER):
SOURCE_REGION = -2  # the region of its source photo that the image was made from
DIFFERENCE = -3  # |image - that region|, amplified
REGION_PICTURES = {SOURCE_REGION: "source", DIFFERENCE: "difference"}
DEFAULT_OPACITY = 0.6
GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False, "doubleClick": "reset", "showSendToCloud": False,
                "modeBarButtonsToRemove": ["autoScale2d", "toImage", "select2d", "lasso2d", "sendChartToCloud"],
                "responsive": True}


# -- layout ----------------------------------------------------------------------------------------
def open_button(index: int, which: str | int = "", children=None, label: str | None = None,
                **props) -> html.Button:
    """A button that opens the viewer on image ``index`` with map ``which`` (``"aggregate"``,
    dimension ``k``, or ``""`` = keep the viewer's choice); for other views (e.g. a map in the
    attention matrix: ``open_button(i, k, html.Img(...))``)."""
    name = "the aggregate map" if which == AGGREGATE else (f"dimension {which}'s map" if which != "" else None)
    aria = label or f"Open image {index} in the viewer" + (f" with {name}" if name else "")
    return html.Button(children, id=ids.viewer_open(int(index), which), n_clicks=0,
                       className=("fx-viewer-open " + props.pop("className", "")).strip(),
                       title=props.pop("title", aria), **{"aria-label": aria}, **props)


def map_options(n_dims: int = 16) -> list[dict]:
    return [{"label": "aggregate map", "value": AGGREGATE}] + \
        [{"label": f"dimension {k}", "value": k} for k in range(n_dims)]


def layout() -> html.Div:
    head = html.Div(className="fx-viewer-head", children=[
        html.H2(id=ids.VIEWER_TITLE, className="fx-viewer-title", children="Image"),
        html.Span(id=ids.VIEWER_POSITION, className="fx-muted"),
        html.Div(className="fx-viewer-nav", children=[
            html.Button("◀ Previous", id=ids.VIEWER_PREV, className="fx-viewer-prev", n_clicks=0,
                        title="Previous image of the cell (← key)"),
            html.Button("Next ▶", id=ids.VIEWER_NEXT, className="fx-viewer-next", n_clicks=0,
                        title="Next image of the cell (→ key)"),
            html.Button("Fit", id=ids.VIEWER_FIT, n_clicks=0, title="Whole image (or double-click it)"),
            html.Button("1:1", id=ids.VIEWER_ACTUAL, n_clicks=0,
                        title="One image pixel per screen pixel"),
            html.Span(id=ids.VIEWER_ZOOM, className="fx-muted fx-viewer-zoom",
                      title="screen pixels per image pixel"),
            html.Button("✕ Close", id=ids.VIEWER_CLOSE, n_clicks=0, title="Close the viewer (Esc)",
                        **{"aria-label": "Close the viewer"}),
        ]),
    ])
    stage = JobPanel(ids.VIEWER_JOB, className="fx-viewer-stage", content=[
        html.Div(className="fx-viewer-images", children=[
            html.Div(className="fx-viewer-col", children=[
                html.Div(id=ids.VIEWER_MAIN_HEAD, className="fx-viewer-pic-head"),
                dcc.Graph(id=ids.VIEWER_GRAPH, className="fx-viewer-graph", config=GRAPH_CONFIG,
                          figure=empty_figure(""), responsive=True),
            ]),
            html.Div(id=ids.VIEWER_PAIR_WRAP, className="fx-viewer-col", children=[
                html.Div(id=ids.VIEWER_PAIR_HEAD, className="fx-viewer-pic-head"),
                dcc.Graph(id=ids.VIEWER_PAIR_GRAPH, className="fx-viewer-graph", config=GRAPH_CONFIG,
                          figure=empty_figure(""), responsive=True),
            ]),
        ]),
    ])
    side = html.Div(className="fx-viewer-side", children=[
        html.Div(id=ids.VIEWER_FACTS),
        html.Div(className="fx-viewer-controls", children=[
            dcc.Checklist(id=ids.VIEWER_OVERLAY, value=[], className="fx-viewer-check",
                          options=[{"label": " show the relevance map", "value": "on"}]),
            dcc.Checklist(id=ids.VIEWER_SUBJECT, value=[], className="fx-viewer-check",
                          options=[{"label": " outline the subject", "value": "on"}]),
            dcc.Dropdown(id=ids.VIEWER_MAP, options=map_options(), value=AGGREGATE, clearable=False,
                         searchable=False, className="fx-viewer-map"),
            html.Label("map opacity", htmlFor=ids.VIEWER_OPACITY, className="fx-muted"),
            dcc.Slider(id=ids.VIEWER_OPACITY, min=0, max=1, step=0.05, value=DEFAULT_OPACITY,
                       marks={0: "0", 0.5: "0.5", 1: "1"}, updatemode="drag",
                       tooltip={"placement": "bottom"}),
        ]),
        html.Div(id=ids.VIEWER_LEGEND, className="fx-viewer-legend"),
        html.Div(id=ids.VIEWER_PAIRS, className="fx-viewer-pairs"),
    ])
    modal = dbc.Modal(id=ids.VIEWER_MODAL, is_open=False, keyboard=True, fade=False, backdrop=True,
                      autofocus=True, labelledby=ids.VIEWER_TITLE, class_name="fx-viewer",
                      dialog_class_name="fx-viewer-dialog", content_class_name="fx-viewer-content",
                      backdrop_class_name="fx-viewer-backdrop",
                      children=[head, html.Div(className="fx-viewer-body", children=[stage, side])])
    return html.Div([modal, dcc.Store(id=ids.VIEWER_KEY)])


# -- what is open ----------------------------------------------------------------------------------
def _valid(view, index) -> int | None:
    try:
        i = int(index)
    except (TypeError, ValueError):
        return None
    return i if view is not None and 0 <= i < view.n_images else None


def as_map(value):
    """``"aggregate"``, a dimension ``k`` (int >= 0), or None for anything else."""
    if value == AGGREGATE:
        return AGGREGATE
    try:
        k = int(value)
    except (TypeError, ValueError):
        return None
    return k if k >= 0 else None


def map_choice(overlay, which):
    """The overlay the controls ask for: None (off), ``"aggregate"`` or a dimension ``k``."""
    if not overlay:
        return None
    chosen = as_map(which)
    return AGGREGATE if chosen is None else chosen


def sequence(ctx: AppContext, view, index: int) -> list[int]:
    """The images of ``index``'s cell in the grid's order (reading order of the prepared grid;
    ascending indices while the grid is not prepared yet)."""
    cell = int(view.cell[index])
    grid = artifacts.read_grid(ctx.app_cache(view), cell)
    if grid is not None:
        return [int(i) for i in grid["order"] if i >= 0]
    return [int(i) for i in view.cell_members(cell)]


def neighbour(ctx: AppContext, view, index: int, step: int) -> int | None:
    """The image ``step`` places away in the cell's order; None past either end (no wrapping:
    the analyst sees where the cell ends, and the buttons are disabled there)."""
    order = sequence(ctx, view, index)
    if index not in order:
        return None
    pos = order.index(index) + step
    return order[pos] if 0 <= pos < len(order) else None


def navigate(ctx: AppContext, trigger, value, current: dict | None, run_id, overlay, which):
    """Next ``STORE_VIEWER`` from one trigger (callback body); ``no_update`` when nothing changes.

    ``trigger`` is the id that fired and ``value`` its value; ``overlay`` / ``which`` are the
    overlay controls (a newly opened image keeps the analyst's overlay choice).
    """
    view = ctx.run(run_id)
    if trigger in (ids.VIEWER_CLOSE, ids.STORE_RUN) or view is None:
        return None if current is not None else no_update
    if trigger == ids.VIEWER_MODAL:  # Esc, or a click on the backdrop
        return None if value is False and current is not None else no_update
    choice = map_choice(overlay, which)
    if trigger == ids.IMAGES_GRAPH:
        points = (value or {}).get("points") or []
        custom = points[0].get("customdata") if points else None
        index = _valid(view, custom[0] if isinstance(custom, list) else custom)
        return {"index": index, "map": choice, "pair": None} if index is not None else no_update
    if trigger == ids.VIEWER_KEY:
        index = _valid(view, (value or {}).get("index"))
        return {"index": index, "map": choice, "pair": None} if index is not None else no_update
    if isinstance(trigger, dict) and trigger.get("type") == ids.viewer_open("")["type"]:
        index = _valid(view, trigger.get("index"))
        asked = as_map(trigger.get("map"))  # "" (or anything else): the analyst's choice
        return {"index": index, "map": choice if asked is None else asked, "pair": None} \
            if index is not None else no_update
    if current is None or _valid(view, current.get("index")) is None:
        return no_update
    if isinstance(trigger, dict) and trigger.get("type") == ids.viewer_compare("")["type"]:
        pair = trigger.get("index")
        return {**current, "pair": pair if pair == -1 or pair in REGION_PICTURES else _valid(view, pair)}
    if trigger in (ids.VIEWER_PREV, ids.VIEWER_NEXT):
        index = neighbour(ctx, view, int(current["index"]), -1 if trigger == ids.VIEWER_PREV else 1)
        return {**current, "index": index, "pair": None} if index is not None else no_update
    if trigger in (ids.VIEWER_OVERLAY, ids.VIEWER_MAP):
        return {**current, "map": choice} if choice != current.get("map") else no_update
    return no_update


# -- what the viewer shows -------------------------------------------------------------------------
def relation(view, index: int, other: int) -> str:
    """How two images of one source relate (:mod:`pipeline.data.provenance`): the same region
    (only then are they linked), another crop, or region unknown (no or unreadable provenance)."""
    try:
        return provenance.relation(view.images.root, view.records[index]["path"], view.records[other]["path"])
    except (OSError, ValueError):  # a damaged provenance.csv proves nothing: nothing is linked
        return provenance.UNKNOWN


def same_source(view, index: int) -> list[int]:
    """The other images with ``index``'s ``source`` (e.g. a real crop and the GAN regenerations
    of the same photo): those of the same region first, then the other class, then the same file
    name, then by index."""
    source = view.records[index].get("source") or ""
    if not source:
        return []
    name, label = Path(view.records[index]["path"]).name, int(view.label[index])
    others = [j for j, r in enumerate(view.records) if j != index and r.get("source") == source]
    return sorted(others, key=lambda j: (relation(view, index, j) != provenance.SAME_REGION,
                                         int(view.label[j]) == label,
                                         Path(view.records[j]["path"]).name != name, j))


def source_region(ctx: AppContext, view, index: int):
    """``(region, photo file)`` of a fake of the demo (:func:`app.files.viewer_files.source_of`);
    ``(None, None)`` for a real (its source region is itself) or without provenance."""
    if int(view.label[index]) != 1:
        return None, None
    try:
        return viewer_files.source_of(view, index, ctx.cache_path)
    except (OSError, ValueError):
        return None, None


def chosen_pair(ctx: AppContext, view, payload: dict) -> int | None:
    """The picture shown side by side: the one asked for, else a same-region image, else the
    source region of a fake (when its photo is here), else the first same-source image."""
    pair, index = payload.get("pair"), int(payload["index"])
    if pair == -1:
        return None
    if pair in REGION_PICTURES:
        return int(pair) if source_region(ctx, view, index)[1] is not None else None
    if pair is not None and _valid(view, pair) is not None:
        return int(pair)
    matches = same_source(view, index)
    if matches and relation(view, index, matches[0]) == provenance.SAME_REGION:
        return matches[0]
    if source_region(ctx, view, index)[1] is not None:
        return SOURCE_REGION
    return matches[0] if matches else None


def picture(view, index: int) -> tuple[object, str]:
    """(header facts of image ``index``'s file, or None, and why it cannot be shown)."""
    try:
        return inspect(view.images.source_path(index), view.images.max_pixels), ""
    except (PathRefused, BadImageError) as e:
        return None, getattr(e, "reason", None) or str(e)


def figure_of(view, index: int, which=None, opacity: float = DEFAULT_OPACITY, layer: bool = False,
              linked: bool = False, outline: bool = False):
    """The figure of image ``index``; with the map ``which`` laid over it when ``layer``, and the
    subject's outline when ``outline``; ``linked``: it shows the main picture's region (its pan and
    zoom follow the main one's)."""
    info, why = picture(view, index)
    if info is None:
        return empty_figure(f"{view.file_name(index)} cannot be shown: {why}")
    return image_figure(urls.image(view.run_id, index), info.width, info.height, linked=linked,
                        layer=urls.layer(view.run_id, index, viewer_files.layer_name(which))
                        if layer and which is not None else None,
                        outline=urls.layer(view.run_id, index, viewer_files.SUBJECT) if outline else None,
                        opacity=DEFAULT_OPACITY if opacity is None else float(opacity),
                        box=model_input_box(info.width, info.height),
                        uirevision=f"{view.run_id}-{index}")


def show(ctx: AppContext, payload, run_id, opacity, subject=None):
    """The main picture now (with its map and the subject's outline when ready); a job when the
    map or the subject mask must be computed first (``subject``: the outline toggle's value)."""
    from pipeline.explain.subject_mask import read_subject_mask

    view = ctx.run(run_id)
    if not payload:
        return None
    index = _valid(view, payload.get("index"))
    if index is None:
        return Ready((empty_figure("This image is not part of the open run."),))
    which, outline = payload.get("map"), bool(subject)
    needs_maps = which is not None and viewer_files.read_layers(ctx.app_cache(view), index) is None
    needs_mask = outline and read_subject_mask(view.path, index) is None
    if not needs_maps and not needs_mask:
        return Ready((figure_of(view, index, which, opacity, layer=which is not None, outline=outline),))
    return Job({"run": view.run_id, "index": index, "map": which, "opacity": opacity, "outline": outline},
               (figure_of(view, index),),
               "Computing this image's relevance maps…" if needs_maps else "Finding this image's subject…")


def compute(ctx: AppContext, view, request: dict, progress, explain=None, atlas=None):
    """The job: compute and draw the image's relevance layers (and its subject mask when the
    outline is asked for); returns the figure with them."""
    from app.jobs import work

    index, which, outline = int(request["index"]), request.get("map"), bool(request.get("outline"))
    if which is not None:
        get_maps = (explain or work.explain_functions())[0]
        viewer_files.prepare_layers(view, ctx.app_cache(view), index, get_maps, progress)
    if outline:  # kept in the run folder (pipeline.explain.atlas_jobs.get_subject_masks)
        get_masks = (atlas or work.atlas_functions())[2]
        get_masks(view.path, [index], progress=lambda done, total, *_: progress("subject mask", done, total))
    return (figure_of(view, index, which, request.get("opacity"), layer=which is not None, outline=outline),), ""


JOB = JobView(ids.VIEWER_JOB, outputs=[(ids.VIEWER_GRAPH, "figure")], show=show, compute=compute,
              blank=(no_update,), failure="Could not compute the relevance map")


def badge(label: int) -> html.Span:
    word = LABEL_WORDS[int(label)]  # -1: an applied set's image without a label
    return html.Span(word, className=f"fx-viewer-badge {word}")


def outcome_words(view, index: int) -> html.Span:
    """✔ right / ✘ wrong, or that there is no label to judge the prediction by."""
    outcome = view.outcome(index)
    if outcome == "unlabelled":
        return html.Span("no label: prediction only", className="fx-muted")
    return html.Span("✔ right" if outcome == "right" else "✘ wrong",
                     className="fx-viewer-right" if outcome == "right" else "fx-viewer-wrong")


def facts(view, index: int, info, why: str = "") -> html.Table:
    """The facts of image ``index``: label, prediction, p(fake), generator, category, split, file
    (``info``, ``why``: :func:`picture`)."""
    r = view.records[index]
    size = f"{info.width} × {info.height} px · {info.format}" if info else f"cannot be shown: {why}"
    if info and not info.as_is:
        size += f" (converted for the browser: {info.reason})"
    rows = [
        ("label", badge(view.label[index])),
        ("prediction", [badge(view.pred[index]), " ", outcome_words(view, index)]),
        ("p(fake)", f"{view.prob[index]:.3f}"),
        ("generator", r.get("generator") or "–"),
        ("category", r.get("category") or "–"),
        ("split", r.get("split") or "–"),
        ("source", r.get("source") or "–"),
        ("cell", str(int(view.cell[index])) + (f" (of run {view.parent_id}, applied set {view.set_name})"
                                               if view.is_applied else "")),
        ("file", html.Code(r.get("path") or view.file_name(index), className="fx-path")),
        ("size", size),
    ]
    return html.Table(className="fx-viewer-facts", children=html.Tbody(
        [html.Tr([html.Th(k), html.Td(v)]) for k, v in rows]))


def legend(view, info, which) -> list:
    """What the overlay ``which`` means, and which part of the image (``info``) the model saw."""
    size = (view.meta.get("encoder") or {}).get("image_size")
    resized = f", resized to {size}×{size} px" if size else ""
    if info is not None and info.width != info.height:
        seen = [html.B("The model saw only the centre square"), f" (dashed frame{resized}); ",
                "the border outside it was not seen by the model (shaded while a map is shown)."]
    else:
        seen = [f"The model saw the whole image{resized}."]
    out = [html.P(seen, className="fx-muted"),
           html.P([html.Span("▭", className="fx-outline-swatch"), " outline the subject: the foreground "
                   "DINOv2's patch features separate (the same whatever the detector); the atlas and the "
                   "matrix count a map's relevance inside it as on the subject."], className="fx-muted")]
    if which == AGGREGATE:
        out.insert(0, html.Div(className="fx-scale", children=[
            html.Span("real", className="fx-scale-end real"), html.Span(className="fx-scale-bar signed"),
            html.Span("fake", className="fx-scale-end fake"),
            html.Div("blue: evidence for real · orange: evidence for fake · clear: none",
                     className="fx-muted")]))
    elif which is not None:
        out.insert(0, html.Div(className="fx-scale", children=[
            html.Span("low", className="fx-scale-end"), html.Span(className="fx-scale-bar inferno"),
            html.Span("high", className="fx-scale-end"),
            html.Div(f"relevance of each region to dimension {which}", className="fx-muted")]))
    return out


# What a picture shown side by side is to the main one, in words (its caption and its button).
RELATION_WORDS = {provenance.SAME_REGION: "same region: pan and zoom linked",
                  provenance.OTHER_CROP: "same source photo, other crop: not the same region, not linked",
                  provenance.UNKNOWN: "same source (region unknown): not linked"}
RELATION_TAGS = {provenance.SAME_REGION: "same region", provenance.OTHER_CROP: "other crop",
                 provenance.UNKNOWN: "region unknown"}


def pairs_strip(ctx: AppContext, view, index: int, shown: int | None) -> list:
    """The same-source images as buttons (click: side by side), each tagged with its relation to
    the main image, and for a demo fake its source photo's region and the difference to it; or
    nothing when there are none."""
    matches = same_source(view, index)
    region, photo = source_region(ctx, view, index)
    if not matches and region is None:
        return []
    source = view.records[index].get("source") or (region.source if region else "")
    buttons = [html.Button("none", id=ids.viewer_compare(-1), n_clicks=0, className="fx-pair-none",
                           **{"aria-pressed": "true" if shown is None else "false",
                              "aria-label": "Show no image side by side"})]
    if photo is not None:
        for pick, words, tag in ((SOURCE_REGION, "source photo, same region", "source"),
                                 (DIFFERENCE, "difference ×4", "diff ×4")):
            buttons.append(html.Button(
                [html.Img(src=urls.source_region(view.run_id, index, REGION_PICTURES[pick]), alt=""),
                 html.Span(tag, className="fx-pair-tag same")],
                id=ids.viewer_compare(pick), n_clicks=0, className="fx-pair fx-pair-region",
                title=f"{words}: the region of {region.view_file} this image was made from"
                      + (" (|this image - it| × 4)" if pick == DIFFERENCE else ""),
                **{"aria-pressed": "true" if pick == shown else "false",
                   "aria-label": "Compare with its source photo, same region" if pick == SOURCE_REGION
                   else "Show the difference to its source photo's region, amplified 4 times"}))
    for j in matches[:MAX_PAIRS]:
        word, rel = view.label_word(j), relation(view, index, j)
        tag = RELATION_TAGS[rel]
        buttons.append(html.Button(
            [html.Img(src=urls.thumb(view.run_id, j), alt=""), html.Span(word, className=f"fx-viewer-badge {word}"),
             html.Span(tag, className="fx-pair-tag" + (" same" if rel == provenance.SAME_REGION else ""))],
            id=ids.viewer_compare(j), n_clicks=0, className="fx-pair",
            title=f"{view.records[j]['path']} ({word}; {RELATION_WORDS[rel]})",
            **{"aria-pressed": "true" if j == shown else "false",
               "aria-label": f"Compare with {view.file_name(j)} ({word}, {tag})"}))
    more = len(matches) - MAX_PAIRS
    lines = [html.Div([html.B("Same source"), f" ({source}): {len(matches)} other image(s)"
                       + (f", first {MAX_PAIRS} shown" if more > 0 else "")
                       + ". Click one to see it side by side; only pictures of the same region follow"
                         " the pan and zoom."], className="fx-muted")]
    if region is not None and photo is None:
        lines.append(html.Div(f"Its source photo ({region.source}, {region.view_file}) is not on this "
                              "machine: no picture of the same region to compare with.",
                              className="fx-muted fx-pair-missing"))
    return lines + [html.Div(buttons, className="fx-pair-buttons")]


def region_caption(view, index: int, pair: int) -> list:
    """The caption over a fake's source region (or the difference to it)."""
    try:
        region = provenance.region_of(view.images.root, view.records[index]["path"])
    except (OSError, ValueError):
        region = None
    where = f"{region.view_file}, box x {region.x} y {region.y}, side {region.side} px" if region else ""
    if pair == DIFFERENCE:
        return [html.B("difference"), f" |this image − its source region| × {viewer_files.DIFFERENCE_GAIN:g}"
                f" ({where}) · same region: pan and zoom linked"]
    return [html.B("its source photo, same region"), f" ({where}) · pan and zoom linked"]


def caption(view, index: int, which=None, link: bool = False) -> list:
    """One line over a picture shown side by side: label, prediction, p(fake), file name; with
    ``link``, a button that makes it the viewer's image (keeping the map ``which``)."""
    outcome = view.outcome(index)
    out = [badge(view.label[index]), " predicted ", badge(view.pred[index]),
           html.Span(f" {view.outcome_mark(index)}",
                     className={"right": "fx-viewer-right", "wrong": "fx-viewer-wrong"}.get(outcome, "fx-muted")),
           f" p(fake) {view.prob[index]:.3f} · ", html.Code(view.file_name(index),
                                                            title=view.records[index]["path"])]
    if link:
        out += [" ", open_button(index, which if which is not None else "", "open this one",
                                 label=f"Open {view.file_name(index)} in the viewer", className="fx-link")]
    return out


# The outputs of the callbacks, by name (Dash's dict form: each callback returns a dict with these
# keys). Their order is the order Dash sends them in.
NAVIGATE_OUTPUTS = dict(state=Output(ids.STORE_VIEWER, "data"), is_open=Output(ids.VIEWER_MODAL, "is_open"),
                        overlay=Output(ids.VIEWER_OVERLAY, "value"), map=Output(ids.VIEWER_MAP, "value"))
CONTENT_OUTPUTS = dict(
    title=Output(ids.VIEWER_TITLE, "children"), position=Output(ids.VIEWER_POSITION, "children"),
    prev_disabled=Output(ids.VIEWER_PREV, "disabled"), next_disabled=Output(ids.VIEWER_NEXT, "disabled"),
    facts=Output(ids.VIEWER_FACTS, "children"), legend=Output(ids.VIEWER_LEGEND, "children"),
    pairs=Output(ids.VIEWER_PAIRS, "children"), pair_figure=Output(ids.VIEWER_PAIR_GRAPH, "figure"),
    pair_style=Output(ids.VIEWER_PAIR_WRAP, "style"), pair_head=Output(ids.VIEWER_PAIR_HEAD, "children"),
    main_head=Output(ids.VIEWER_MAIN_HEAD, "children"))


def navigate_outputs(ctx: AppContext, trigger, value, current: dict | None, run_id, overlay, which) -> dict:
    """The navigation callback's outputs (:data:`NAVIGATE_OUTPUTS`) for one trigger: the new
    ``STORE_VIEWER`` (:func:`navigate`), whether the dialog is open, and the overlay controls
    set from a newly opened image's map."""
    unchanged = dict.fromkeys(NAVIGATE_OUTPUTS, no_update)
    if isinstance(trigger, dict) and not value:
        return unchanged  # a button was (re)created, not clicked
    state = navigate(ctx, trigger, value, current, run_id, overlay, which)
    if state is no_update:
        return unchanged
    if state is None:
        return dict(unchanged, state=None, is_open=False)
    m = state.get("map")
    return dict(state=state, is_open=True, overlay=["on"] if m is not None else [],
                map=m if m is not None else no_update)


def content(ctx: AppContext, payload, run_id) -> dict:
    """Everything around the picture (callback body), by the names of :data:`CONTENT_OUTPUTS`:
    title, position, previous/next disabled, facts, legend, same-source strip, the side-by-side
    picture, its visibility, and the captions over both pictures (only while two are shown)."""
    view = ctx.run(run_id)
    index = _valid(view, (payload or {}).get("index"))
    if index is None:
        return dict.fromkeys(CONTENT_OUTPUTS, no_update)
    order = sequence(ctx, view, index)
    pos = order.index(index) if index in order else -1
    which = payload.get("map")
    pair = chosen_pair(ctx, view, payload)
    title = view.file_name(index)
    position = f"image {pos + 1} of {len(order)} in cell {int(view.cell[index])}"
    info, why = picture(view, index)
    if pair is None:
        pair_fig, pair_style, head, main_head = empty_figure(""), {"display": "none"}, [], []
    elif pair in REGION_PICTURES:
        if info is None:
            pair_fig = empty_figure(f"{view.file_name(index)} cannot be shown: {why}")
        else:  # one uirevision for the source region and the difference: the toggle keeps the zoom
            pair_fig = image_figure(urls.source_region(view.run_id, index, REGION_PICTURES[pair]),
                                    info.width, info.height, linked=True,
                                    uirevision=f"{view.run_id}-{index}-region")
        pair_style, head, main_head = {}, region_caption(view, index, pair), caption(view, index)
    else:
        rel = relation(view, index, pair)
        pair_fig, pair_style = figure_of(view, pair, linked=rel == provenance.SAME_REGION), {}
        head = [html.Span(RELATION_WORDS[rel], className="fx-pair-relation " + rel.replace(" ", "-")),
                html.Br(), *caption(view, pair, which, link=True)]
        main_head = caption(view, index)
    return dict(title=title, position=position, prev_disabled=pos <= 0,
                next_disabled=pos < 0 or pos >= len(order) - 1, facts=facts(view, index, info, why),
                legend=legend(view, info, which), pairs=pairs_strip(ctx, view, index, pair),
                pair_figure=pair_fig, pair_style=pair_style, pair_head=head, main_head=main_head)


def register(app, ctx: AppContext, managers) -> None:
    JOB.register(app, ctx, managers.views, inputs=[Input(ids.STORE_VIEWER, "data"),
                                                   State(ids.STORE_RUN, "data"),
                                                   State(ids.VIEWER_OPACITY, "value"),
                                                   Input(ids.VIEWER_SUBJECT, "value")])

    @app.callback(output=NAVIGATE_OUTPUTS,
                  inputs=dict(grid_click=Input(ids.IMAGES_GRAPH, "clickData"), key=Input(ids.VIEWER_KEY, "data"),
                              open_clicks=Input(ids.viewer_open(ALL, ALL), "n_clicks"),
                              compare_clicks=Input(ids.viewer_compare(ALL), "n_clicks"),
                              prev=Input(ids.VIEWER_PREV, "n_clicks"), next=Input(ids.VIEWER_NEXT, "n_clicks"),
                              close=Input(ids.VIEWER_CLOSE, "n_clicks"), is_open=Input(ids.VIEWER_MODAL, "is_open"),
                              overlay=Input(ids.VIEWER_OVERLAY, "value"), which=Input(ids.VIEWER_MAP, "value"),
                              run_id=Input(ids.STORE_RUN, "data"), current=State(ids.STORE_VIEWER, "data")),
                  prevent_initial_call=True)
    def _navigate(overlay, which, run_id, current, **_triggers):
        trigger = callback_context.triggered_id
        value = callback_context.triggered[0].get("value") if callback_context.triggered else None
        return navigate_outputs(ctx, trigger, value, current, run_id, overlay, which)

    @app.callback(output=CONTENT_OUTPUTS,
                  inputs=dict(payload=Input(ids.STORE_VIEWER, "data"), run_id=State(ids.STORE_RUN, "data")))
    def _content(payload, run_id):
        return content(ctx, payload, run_id)

    # In the browser (assets/viewer.js): the grid's keyboard cursor, the opacity slider (applied
    # to the figure on screen, no round trip), Fit / 1:1, the zoom read-out, and the side-by-side
    # picture following the main one's pan and zoom. Ids reach the script as State values.
    app.clientside_callback(ClientsideFunction("faxplainer_viewer", "gridKeys"),
                            Input(ids.IMAGES_GRAPH, "figure"), State(ids.IMAGES_GRAPH, "id"),
                            State(ids.VIEWER_KEY, "id"))
    app.clientside_callback(ClientsideFunction("faxplainer_viewer", "opacity"),
                            Input(ids.VIEWER_OPACITY, "value"), State(ids.VIEWER_GRAPH, "id"))
    app.clientside_callback(ClientsideFunction("faxplainer_viewer", "zoomTo"),
                            Input(ids.VIEWER_FIT, "n_clicks"), Input(ids.VIEWER_ACTUAL, "n_clicks"),
                            State(ids.VIEWER_GRAPH, "id"), State(ids.VIEWER_FIT, "id"),
                            prevent_initial_call=True)
    app.clientside_callback(ClientsideFunction("faxplainer_viewer", "viewerHooks"),
                            Input(ids.VIEWER_GRAPH, "figure"), Input(ids.VIEWER_PAIR_GRAPH, "figure"),
                            State(ids.VIEWER_GRAPH, "id"), State(ids.VIEWER_PAIR_GRAPH, "id"),
                            State(ids.VIEWER_ZOOM, "id"))
