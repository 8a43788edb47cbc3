"""Where each dimension looks, in the app (issue 25): the atlas view reads a run's kept atlas as a
row per dimension (verdict, shares, contribution, sentence, the images where it is highest and
lowest opening the viewer on that dimension's map), the attention matrix's headers and count line
and the concept view's count line say which dimensions look at the background, the viewer outlines
the subject, and the findings sheet carries the atlas. Profiles with known subject shares stand in
for computed ones, so every verdict shown is known."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.files import viewer_files
from app.state import ids
from app.state.context import AppContext
from app.views import atlas as atlas_view
from app.views import attention, concepts, viewer
from pipeline.explain.atlas import atlas_result, build_atlas
from pipeline.explain.profiles import ImageProfile
from tests.fixtures_runs import FAKE_EXPLAIN
from tests.unit.test_app_callbacks import _find, _texts

BACKGROUND, SUBJECT, MIXED = range(0, 6), range(6, 12), range(12, 16)  # the known verdicts


def known_shares() -> np.ndarray:
    """Subject share per dimension: d0-d5 on the background, d6-d11 on the subject, d12-d15 both
    (the subject covers half of each image: 0.5 is a flat map's share)."""
    s = np.full(16, 0.5)
    s[list(BACKGROUND)], s[list(SUBJECT)] = 0.2, 0.85
    return s


def profile(index: int) -> ImageProfile:
    """Image ``index``'s known profile: the shares above; dimension k's value z = index + k, its
    contribution (k - 7.5) / 10 (d0 pushes hardest towards real, d15 towards fake)."""
    k = np.arange(16, dtype=np.float64)
    return ImageProfile(index, known_shares(), np.full(16, 0.3), np.full(16, 0.6), np.full(16, 0.2),
                        (k - 7.5) / 10, index + k, 0.5, 0.44, 0.5)


@pytest.fixture
def ctx(make_fake_run, app_config):
    make_fake_run(n_images=30, n_cells=3)
    return AppContext(app_config)


def keep_atlas(view, names=None) -> dict:
    """The run's atlas as the pipeline keeps it, from known profiles of its sample."""
    result = atlas_result(view.path)
    sample = result.inputs["indices"]
    return result.write(build_atlas([profile(i) for i in sample], view.records, names,
                                    ["grass", "sky"] if names else None))


def rows(content) -> dict[int, object]:
    return {int(r.to_plotly_json()["props"]["data-dim"]): r for r in _find(content, "fx-atlas-row")
            if "fx-atlas-header" not in r.className}


def test_the_atlas_says_which_dimensions_look_at_the_background_without_a_map(ctx):
    view = ctx.run("fake-run")
    summary, content, button, style = atlas_view.show(ctx, "fake-run")
    assert "not built yet" in summary and button == "Build the atlas" and style == atlas_view.SHOWN
    kept = keep_atlas(view)
    summary, content, button, style = atlas_view.show(ctx, "fake-run")
    assert button.startswith("Draw the examples' maps") and style == atlas_view.SHOWN  # none drawn yet
    assert summary.endswith("6 background, 6 subject, 4 mixed")
    [line] = _find(content, "fx-count-line")
    assert _texts(line).startswith(f"of 16 dimensions, 6 look mostly at the background of the "
                                   f"{kept['n_images']} held-out images of the atlas: d0, d1, d2, d3, d4, d5; 6 at the subject")
    by_dim = rows(content)
    assert sorted(by_dim) == list(range(16))
    for k, row in by_dim.items():
        verdict = "background" if k in BACKGROUND else "subject" if k in SUBJECT else "mixed"
        assert row.to_plotly_json()["props"]["data-verdict"] == verdict
        assert _texts(_find(row, "fx-verdict-chip")) == verdict
    assert "background 80%" in _texts(_find(by_dim[3], "fx-sb"))  # 1 - 0.2 of d3's relevance
    # the most used first: |contribution| (k - 7.5) / 10 is largest for d0 and d15
    order = [int(r.to_plotly_json()["props"]["data-dim"]) for r in _find(content, "fx-atlas-row")[1:]]
    assert order[:2] in ([0, 15], [15, 0]) and set(order[-2:]) == {7, 8}
    # its examples open the viewer on that dimension's map, highest z first (z = index + k)
    top = _find(_find(by_dim[4], "fx-atlas-exs")[0], "fx-atlas-ex")
    assert [b.id for b in top] == [ids.viewer_open(i, 4) for i in sorted(kept["image_indices"], reverse=True)[:4]]
    assert all("/files/thumb/" in b.children.src for b in top)  # no map drawn yet: the thumbnail
    assert not _find(content, "fx-atlas-names") and "CLIP" not in _texts(content)  # no names: no column


def test_building_keeps_the_atlas_then_draws_the_examples_maps(ctx):
    view = ctx.run("fake-run")
    calls = []

    def get_atlas(run_dir, progress=None, **_):
        calls.append(run_dir)
        progress(1, 1, "relevance maps and subject masks")
        return keep_atlas(view)

    seen = []
    summary, content, message, style = atlas_view.build(ctx, "fake-run", lambda *a: seen.append(a),
                                                        get_atlas=get_atlas, get_maps=FAKE_EXPLAIN[0])
    assert calls == [view.path] and message == "" and ("relevance maps and subject masks", 1, 1) in seen
    examples = _find(content, "fx-atlas-ex")
    assert examples and all(f"/files/attn/fake-run/" in b.children.src for b in examples)
    k = int(_find(content, "fx-atlas-row")[1].to_plotly_json()["props"]["data-dim"])
    assert all(b.children.src.endswith(f"/d{k:02d}.jpg") for b in _find(rows(content)[k], "fx-atlas-ex"))
    assert style == atlas_view.HIDDEN and atlas_view.show(ctx, "fake-run")[3] == atlas_view.HIDDEN  # all drawn


def test_the_clip_names_column_appears_only_with_names(ctx):
    view = ctx.run("fake-run")
    keep_atlas(view, names=[[{"word": "grass", "score": 0.31}, {"word": "sky", "score": 0.2}]] * 16)
    content = atlas_view.show(ctx, "fake-run")[1]
    assert "regions named (CLIP only)" in _texts(content)
    assert [" ".join(_texts(n).split()) for n in _find(rows(content)[2], "fx-atlas-names")] == ["CLIP only: grass, sky"]


def test_the_matrix_headers_and_count_line_say_where_each_dimension_looks(ctx, monkeypatch):
    chosen = [0, 2]
    request = attention.JOB.render(ctx, {"ids": chosen}, "fake-run", 0)[-1]
    content, _, _ = attention.JOB.prepare(ctx, request, lambda *a: None, explain=FAKE_EXPLAIN)
    assert _texts(_find(content, "fx-count-line")) == ("Where each dimension looks (subject or background): "
                                                       "computing…")
    # the profiles job: asked for the shown images once their maps are drawn, computes them, redraws
    job = attention.show_profiles(ctx, {"run": "fake-run"}, {"ids": chosen}, "fake-run", 0)
    assert job.request["indices"] == chosen
    asked = []
    done, _ = attention.compute_profiles(ctx, ctx.run("fake-run"), job.request, lambda *a: None,
                                         atlas=(None, lambda run, idx, progress=None: asked.append(idx), None))
    assert asked == [chosen] and done == ({"run": "fake-run", "indices": chosen},)
    monkeypatch.setattr(attention, "read_profiles", lambda run, idx: {i: profile(i) for i in idx})
    assert attention.show_profiles(ctx, {"run": "fake-run"}, {"ids": chosen}, "fake-run", 0) is None
    content, _ = attention.redraw(ctx, "fake-run", {"ids": chosen}, "fake-run", 0)
    assert _texts(_find(content, "fx-count-line")).startswith(
        "of 16 dimensions, 6 look mostly at the background of these 2 images: d0, d1, d2, d3, d4, d5")
    for head in _find(content, "fx-attn-head"):
        k = int(head.to_plotly_json()["props"]["data-dim"])
        [chip] = _find(head, "fx-share-chip")
        if k in BACKGROUND:  # 80% of its relevance on the background, half of the image
            assert chip.className.endswith("background") and _texts(chip) == "background 80% on 50%"
        elif k in SUBJECT:
            assert chip.className.endswith("subject") and _texts(chip) == "subject 85% on 50%"
        else:
            assert chip.className.endswith("mixed") and _texts(chip) == "mixed 50% on 50%"


def test_the_concept_view_counts_for_the_cell(ctx, monkeypatch):
    view = ctx.run("fake-run")
    sample = concepts.cell_sample(view, 0)
    members = [int(i) for i in view.cell_members(0)]
    assert set(sample) <= set(members) and len(sample) == min(concepts.CELL_SAMPLE, len(members))
    assert sample[0] == members[0] and sample[-1] == members[-1]  # spread over the whole cell
    job = concepts.show_count(ctx, "concepts", 0, "fake-run")
    assert job.request["indices"] == sample and "computing" in _texts(job.values[0])
    assert concepts.show_count(ctx, "images", 0, "fake-run") is None  # the concept view is not open
    monkeypatch.setattr(concepts, "read_profiles", lambda run, idx: {i: profile(i) for i in idx})
    ready = concepts.show_count(ctx, "concepts", 0, "fake-run")
    assert _texts(ready.values[0]).startswith(
        f"of 16 dimensions, 6 look mostly at the background of the {len(members)} images of cell 0: d0")


def test_the_subject_outline_is_a_line_around_the_mask():
    mask = np.zeros((40, 40), bool)
    mask[10:30, 12:28] = True
    alpha = np.asarray(viewer_files.outline_layer(mask))[..., 3]
    assert alpha[10, 20] == 255 and alpha[29, 20] == 255 and alpha[20, 12] == 255  # on the border
    assert alpha[20, 20] == viewer_files.SUBJECT_TINT  # inside: a faint tint says which side is the subject
    assert alpha[0, 0] == 0 and alpha[20, 2] == 0  # the background, away from the line: clear


def test_the_viewer_finds_the_subject_first_then_outlines_it(ctx, monkeypatch):
    view = ctx.run("fake-run")
    job = viewer.show(ctx, {"index": 3, "map": None}, "fake-run", 0.6, ["on"])
    assert job.request["outline"] is True and "subject" in job.message
    asked = []
    (figure,), _ = viewer.compute(ctx, view, job.request, lambda *a: None,
                                  atlas=(None, None, lambda run, idx, progress=None: asked.append(idx)))
    assert asked == [[3]]
    names = [im.name for im in figure.layout.images]
    assert "subject" in names and figure.layout.images[names.index("subject")].source.endswith("/3/subject.png")

    class Kept:
        def at(self, size):
            m = np.zeros(size, bool)
            m[size[0] // 4:3 * size[0] // 4, size[1] // 4:3 * size[1] // 4] = True
            return m

    monkeypatch.setattr("pipeline.explain.subject_mask.read_subject_mask", lambda run, i: Kept())
    ready = viewer.show(ctx, {"index": 3, "map": None}, "fake-run", 0.6, ["on"])
    assert [im.name for im in ready.values[0].layout.images].count("subject") == 1
    assert [im.name for im in viewer.show(ctx, {"index": 3, "map": None}, "fake-run", 0.6, [])
            .values[0].layout.images].count("subject") == 0  # toggled off
    path = viewer_files.subject_file(view, ctx.app_cache(view), 3)
    alpha = np.asarray(Image.open(path))[..., 3]
    centre, corner = viewer_files.OUTLINE_SIZE // 2, 2  # the known mask: the centre half is the subject
    assert alpha[centre, centre] == viewer_files.SUBJECT_TINT and alpha[corner, corner] == 0 and alpha.max() == 255


def test_the_findings_sheet_carries_the_atlas(ctx):
    from pipeline.report.findings import findings_html
    from pipeline.report.findings_pdf import findings_pdf

    view = ctx.run("fake-run")
    cache = view.path.parent.parent / "cache"
    assert "Dimension atlas</h2><div class='muted'>Not built yet" in findings_html(view.path, cache)
    without = findings_pdf(view.path, cache)
    kept = keep_atlas(view)
    page = findings_html(view.path, cache)
    assert (f"of 16 dimensions, 6 look mostly at the background of the {kept['n_images']} held-out images "
            f"of the atlas: d0, d1, d2, d3, d4, d5") in page
    verdicts = dict(re_pairs(page))
    assert verdicts == {k: "background" if k in BACKGROUND else "subject" if k in SUBJECT else "mixed"
                        for k in range(16)}
    assert page.count("alt='d0 highest:") == 3
    with_atlas = findings_pdf(view.path, cache)
    assert with_atlas.startswith(b"%PDF-") and len(with_atlas) > len(without) + 10_000  # its pictures


def re_pairs(page: str):
    import re

    return [(int(k), v) for k, v in re.findall(r"data-dim='(\d+)' data-verdict='(\w+)'", page)]
