"""Concept view (toggle of the image view): the cell's visual concepts.

Each concept (a cluster of relevant image segments, ACE-style, computed by
``pipeline.explain.cache.get_concepts``) shows its most central patches, its size and its profile
over the 16 dimensions. Every count names its unit: a concept has so many *segments*, cut from
so many *images*; both are split by label (the images by their label, the segments by the label of
the image each was cut from). A concept's colour (:mod:`app.figures.concept_palette`) only says
which concept it is, never blue or orange, which mean real and fake; its real/fake make-up is a
bar in those colours. Computed in a background job on first request, then read from disk.
Concepts are found per cell: an open image set (:mod:`app.state.imagesets`) has none, and the view says
so. An applied set's cells (pseudo-run ``RUN@SET``) get concepts from the set's images there.
"""
from __future__ import annotations

import math

import numpy as np
from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from pipeline.explain.profiles import count_sentence, read_profiles, summarise

from app.files import artifacts, urls

from app.state import ids, imagesets
from app.state.context import AppContext
from app.figures.common import profile_figure
from app.figures.concept_palette import concept_colour, concept_colour_name
from app.jobs.panel import Job, JobPanel, JobView, Ready


def layout() -> html.Div:
    return html.Div(id=ids.CONCEPTS_PANEL, style={"display": "none"}, children=[
        JobPanel(ids.CONCEPTS_PROFILE_JOB, [html.Div(id=ids.CONCEPTS_COUNT)], className="fx-check-panel"),
        JobPanel(ids.CONCEPTS_JOB, [html.Div(id=ids.CONCEPTS_CONTENT)]),
    ])


CELL_SAMPLE = 12  # images of a cell profiled for its count line (evenly spread over the cell)


def cell_sample(view, cell) -> list[int]:
    """A fixed sample of the cell's images (ascending indices, evenly spread): the images whose
    profiles make the cell's count line."""
    members = [int(i) for i in view.cell_members(cell)]
    if len(members) <= CELL_SAMPLE:
        return members
    return [members[int(round(j))] for j in np.linspace(0, len(members) - 1, CELL_SAMPLE)]


def count_words(view, cell, sample: list[int], profiles: dict) -> html.Div:
    """"of 16 dimensions, 6 look mostly at the background of 12 images of cell 4: ..." from the
    sample's profiles (:func:`pipeline.explain.profiles.count_sentence`)."""
    have = [profiles[i] for i in sample if i in profiles]
    n = len(view.cell_members(cell))
    what = (f"the {len(have)} images of cell {cell}" if len(have) == n else
            f"{len(have)} images of cell {cell} (an even sample of its {n})")
    return html.Div(count_sentence(summarise(have), what), className="fx-count-line")


def show_count(ctx: AppContext, view_name, cell, run_id):
    """The cell's count line: at once when the sample's profiles are kept, else a job."""
    if view_name != "concepts":
        return None
    view = ctx.run(run_id)
    if view is None or cell is None or imagesets.is_set(cell):
        return Ready(([],))
    sample = cell_sample(view, cell)
    profiles = read_profiles(view.path, sample)
    if not sample or len(profiles) == len(sample):
        return Ready((count_words(view, cell, sample, profiles) if profiles else [],))
    return Job({"run": view.run_id, "cell": int(cell), "indices": sample},
               (html.Div(f"Where each dimension looks in cell {cell}: computing…",
                         className="fx-count-line pending"),),
               f"Profiling {len(sample) - len(profiles)} image(s) of cell {cell} (relevance maps and subject masks)…")


def compute_count(ctx: AppContext, view, request: dict, progress, atlas=None):
    from app.jobs import work

    get_profiles = (atlas or work.atlas_functions())[1]  # kept in the run folder
    sample = [int(i) for i in request["indices"]]
    profiles = get_profiles(view.path, sample,
                            progress=lambda done, total, *_: progress("images profiled", done, total))
    return (count_words(view, int(request["cell"]), sample, profiles),), ""


COUNT = JobView(ids.CONCEPTS_PROFILE_JOB, outputs=[(ids.CONCEPTS_COUNT, "children")], show=show_count,
                compute=compute_count, blank=([],),
                failure="Where each dimension looks in this cell could not be computed")


MIN_SHARE = 0.10  # a concept with a smaller share of the cell's segments is marked as small


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def percent(n: int, total: int) -> str:
    return f"{n / (total or 1):.0%}"


def small_below(total: int) -> int:
    """Fewest segments a concept of a cell with ``total`` segments needs not to be small: at least
    ``MIN_SHARE`` of them, and never a single segment."""
    return max(2, math.ceil(round(MIN_SHARE * total, 9)))  # round: 0.1 * 30 is 3.0000000000000004


def image_counts(concept: dict, labels) -> dict | None:
    """How many of the concept's images are real, fake and without a label (``labels``: the run's
    label per image, 0 real / 1 fake / -1 none), or None when the concepts file does not list them."""
    images = concept.get("images")
    if not images or labels is None:
        return None
    kinds = [int(labels[int(i)]) for i in images]
    return {"real": kinds.count(0), "fake": kinds.count(1), "unlabelled": kinds.count(-1)}


def images_words(n_images: int, counts: dict | None) -> str:
    """``"9 images (4 real, 5 fake images)"``: the images the segments come from, by label."""
    words = plural(n_images, "image")
    if counts is None:
        return words
    parts = []
    if counts["real"] + counts["fake"]:
        parts.append(f"{counts['real']} real, {counts['fake']} fake image{'' if n_images == 1 else 's'}")
    if counts["unlabelled"]:
        parts.append(f"{counts['unlabelled']} without a label")
    return f"{words} ({'; '.join(parts)})"


def segments_words(concept: dict) -> str:
    """``"12 segments from real images (71%), 5 from fake images (29%)"``: the segments by label of
    the image each was cut from."""
    real, fake = int(concept.get("segments_real", 0)), int(concept.get("segments_fake", 0))
    unknown = int(concept.get("segments_unlabelled", 0))  # an applied set's images without a label
    total = real + fake + unknown
    if unknown and not real + fake:  # an applied set without labels: no real or fake to count
        return f"{plural(unknown, 'segment')}, all from images without a label"
    words = (f"{plural(real, 'segment')} from real images ({percent(real, total)}), "
             f"{fake} from fake images ({percent(fake, total)})")
    if unknown:
        words += f", {unknown} from images without a label ({percent(unknown, total)})"
    return words


def label_share(concept: dict) -> html.Div:
    """How many of the concept's segments come from real and from fake images, as a bar in the
    real and fake colours (the concept's own colour says which concept, never real or fake)."""
    real, fake = int(concept.get("segments_real", 0)), int(concept.get("segments_fake", 0))
    unknown = int(concept.get("segments_unlabelled", 0))
    total = real + fake + unknown or 1
    words = segments_words(concept)
    return html.Div(className="fx-concept-share", children=[
        html.Div(className="fx-share-bar", title=words,
                 children=[html.Span(className="real", style={"width": f"{100 * real / total:.0f}%"}),
                           html.Span(className="fake", style={"width": f"{100 * fake / total:.0f}%"}),
                           html.Span(className="unlabelled", style={"width": f"{100 * unknown / total:.0f}%"})]),
        html.Span(words, className="fx-muted"),
    ])


def small_words(total: int) -> str:
    """What "small" means for a concept of a cell with ``total`` segments."""
    return (f"small concept: fewer than {small_below(total)} segments (under {MIN_SHARE:.0%} of the "
            f"cell's {plural(total, 'segment')}, or a single segment), so one image's detail rather "
            f"than a pattern of the cell")


def concept_block(run_id: str, cell: int, k: int, concept: dict, total: int, labels=None) -> html.Div:
    """One concept: its colour and counts (segments, the images they come from, each by label),
    its most central patches, its profile and the button that outlines its images in the grid.

    ``total`` is the number of segments of all the cell's concepts; ``labels`` the run's label per
    image (to count the concept's real and fake images)."""
    colour = concept_colour(k)
    size = int(concept["size"])
    n_images = len(concept.get("images") or ()) or int(concept.get("n_images", 0))
    small = size < small_below(total)
    images = images_words(n_images, image_counts(concept, labels))
    return html.Div(className=f"fx-concept{' small' if small else ''}", **{"data-concept": str(k)}, children=[
        html.Div([html.Span(className="fx-concept-swatch", style={"background": colour},
                            title=f"concept {k + 1}'s colour ({concept_colour_name(k)}): not real or fake"),
                  html.B(f"Concept {k + 1}"),
                  html.Span(f" · {plural(size, 'segment')} from {images} · {percent(size, total)} of the "
                            f"cell's {plural(total, 'segment')}", className="fx-muted")]),
        html.Div(small_words(total), className="fx-concept-small") if small else None,
        label_share(concept),
        html.Div(className="fx-patches", children=[
            html.Img(src=urls.concept_patch(run_id, cell, k, j), alt=f"concept {k + 1} patch {j + 1}")
            for j in range(len(concept.get("patches", [])))]),
        dcc.Graph(id=ids.concept_profile(k), figure=profile_figure(concept["profile"], colour),
                  config={"displayModeBar": False}, style={"height": "150px"}),
        html.Button(f"Show its {plural(n_images, 'image')} in the grid", id=ids.concept_show(k),
                    n_clicks=0, className="fx-concept-show", disabled=not concept.get("images"),
                    title=f"outlines them in the grid, dotted {concept_colour_name(k)}"),
    ])


def content(view, cache, cell: int):
    """(children, message) of the cell's cached concepts, or None when not computed yet."""
    data = artifacts.read_concepts(view, cell)
    if data is None:
        return None
    concepts = data.get("concepts", [])
    total = sum(c["size"] for c in concepts)
    blocks = [concept_block(view.run_id, cell, k, c, total, view.label) for k, c in enumerate(concepts)]
    return blocks, f"{len(concepts)} concepts of cell {cell}" + source_note(data)


def source_note(data: dict) -> str:
    """Which of the cell's images the concepts come from, when not all of them."""
    n, used, skipped = data.get("n_images"), data.get("n_images_used"), data.get("n_skipped") or 0
    note = ""
    if n and used is not None and used + skipped < n:
        note = f", from a fixed random sample of {used + skipped} of its {n} images (concepts.max_images)"
    if skipped:
        note += f"; {skipped} unreadable image{'s' if skipped > 1 else ''} left out"
    return note


def show(ctx: AppContext, view_name, cell, run_id):
    """What the concept view shows: nothing unless toggled on; cached concepts at once, else a job."""
    if view_name != "concepts":
        return None
    view = ctx.run(run_id)
    if view is None or cell is None:
        return Ready(([],), "Click a cell to see its concepts.")
    if imagesets.is_set(cell):
        info = view.cell_info(cell)
        name = info["title"] if info else "this image set"
        return Ready(([],), f"Concepts are found per cell of the representation; the open image set "
                            f"({name}) is not a cell. Click a cell to see its concepts.")
    ready = content(view, ctx.app_cache(view), cell)
    if ready is not None:
        return Ready((ready[0],), ready[1])
    return Job({"run": view.run_id, "cell": int(cell)}, ([],), f"Finding the concepts of cell {cell}…")


def compute(ctx: AppContext, view, request: dict, progress, explain=None):
    """The job: compute the requested cell's concepts; returns ((content,), message)."""
    from app.jobs import work

    cell = int(request["cell"])
    _, get_concepts, _ = explain or work.explain_functions()
    cache = ctx.app_cache(view)
    progress("concepts", 0, 1)
    get_concepts(view.path, cell, progress=lambda done, total, stage="concepts", *_:  # kept in the run folder
                 progress(stage, done, total))
    ready = content(view, cache, cell)
    if ready is None:
        raise RuntimeError(f"the concepts were computed but their file is missing under {view.path}")
    return (ready[0],), ready[1]


JOB = JobView(ids.CONCEPTS_JOB, outputs=[(ids.CONCEPTS_CONTENT, "children")], show=show,
              compute=compute, blank=([],), failure="Could not compute the concepts")


def highlight(ctx: AppContext, trigger, clicks, run_id, cell):
    """STORE_HIGHLIGHT after a click: the images of concept k (of the open cell), or None."""
    if not clicks:
        return no_update
    if trigger == ids.HIGHLIGHT_CLEAR:
        return None
    view = ctx.run(run_id)
    is_cell = cell is not None and not imagesets.is_set(cell)  # an image set has no concepts
    data = artifacts.read_concepts(view, cell) if view and is_cell else None
    k = int(trigger["index"]) if isinstance(trigger, dict) else -1
    if data is None or not 0 <= k < len(data.get("concepts", [])):
        return no_update
    images = [int(i) for i in data["concepts"][k].get("images", [])]
    return {"ids": images, "run": view.run_id, "cell": int(cell), "why": f"the {plural(len(images), 'image')} "
            f"of concept {k + 1}", "colour": concept_colour(k), "colour_name": concept_colour_name(k)}


def register(app, ctx: AppContext, managers) -> None:
    @app.callback(Output(ids.IMAGES_PANEL, "style"), Output(ids.CONCEPTS_PANEL, "style"),
                  Input(ids.STORE_VIEW, "data"))
    def _toggle(view_name):
        concepts = view_name == "concepts"
        return {"display": "none" if concepts else "block"}, {"display": "block" if concepts else "none"}

    JOB.register(app, ctx, managers.views, inputs=[Input(ids.STORE_VIEW, "data"),
                                                   Input(ids.STORE_CELL, "data"),
                                                   State(ids.STORE_RUN, "data")])
    COUNT.register(app, ctx, managers.views, inputs=[Input(ids.STORE_VIEW, "data"),
                                                     Input(ids.STORE_CELL, "data"),
                                                     State(ids.STORE_RUN, "data")])

    @app.callback(Output(ids.STORE_HIGHLIGHT, "data"), Input(ids.concept_show(ALL), "n_clicks"),
                  Input(ids.HIGHLIGHT_CLEAR, "n_clicks"), State(ids.STORE_RUN, "data"),
                  State(ids.STORE_CELL, "data"), prevent_initial_call=True)
    def _highlight(_shows, _clear, run_id, cell):
        value = dash_ctx.triggered[0].get("value") if dash_ctx.triggered else None
        return highlight(ctx, dash_ctx.triggered_id, value, run_id, cell)
