"""app.state.filters: the image filter, its mask over a run's images and the per-cell recounts."""
import numpy as np
import pytest

from app.state.context import AppContext
from app.state.filters import NO_GENERATOR, ImageColumns, ImageFilter, cell_counts, mask, matching_images


@pytest.fixture
def view(make_fake_run, app_config):
    make_fake_run(n_images=60, n_cells=5)
    return AppContext(app_config).run("fake-run")


def columns(prob, label=None, correct=None, cell=None, generator=None, path=None):
    n = len(prob)
    label = np.zeros(n, int) if label is None else np.asarray(label)
    records = [{"path": (path or [f"d/img_{i}.png" for i in range(n)])[i],
                "generator": (generator or [""] * n)[i], "category": "", "split": ""} for i in range(n)]
    return ImageColumns.of(records, label, np.ones(n, bool) if correct is None else correct, prob,
                           np.zeros(n, int) if cell is None else cell, [0, 1, 2])


def brute_force_counts(view, keep):
    """Per cell id: [real right, real wrong, fake right, fake wrong], by a loop over the records."""
    out = {}
    for i, r in enumerate(view.records):
        if not keep[i]:
            continue
        row = out.setdefault(r["cell"], [0, 0, 0, 0])
        row[2 * r["label"] + (0 if r["correct"] else 1)] += 1
    return out


def test_a_label_filter_leaves_exactly_the_fake_images(view):
    keep = mask(view, ImageFilter(labels=("fake",)))
    fakes = [i for i, r in enumerate(view.records) if r["label"] == 1]
    assert np.flatnonzero(keep).tolist() == fakes
    assert keep.sum() == view.meta["data"]["n_fake"] == 30
    # both labels chosen = no label filter; its JSON form is the filter that keeps all
    assert mask(view, {"labels": ["real", "fake"]}).all()
    assert ImageFilter(labels=("real", "fake")).to_json() == {"labels": ["real", "fake"]}
    assert mask(view, None).all() and ImageFilter().to_json() is None


def test_unfiltered_counts_are_the_cells_of_the_run(view):
    cc = cell_counts(view)
    for k, cell in enumerate(view.cells["cells"]):
        assert cc.ids[k] == cell["id"]
        assert cc.counts[k].tolist() == [cell["real_correct"], cell["real_wrong"],
                                         cell["fake_correct"], cell["fake_wrong"]]
        assert cc.n[k] == cc.total[k] == cell["n"]
        assert cc.accuracy[k] == pytest.approx(cell["accuracy"])
        assert cc.confidence[k] == pytest.approx(cell["mean_confidence"], abs=1e-6)


@pytest.mark.parametrize("flt", [
    ImageFilter(labels=("fake",)),
    ImageFilter(generators=("gan",), outcomes=("wrong",)),
    ImageFilter(categories=("cat",), splits=("heldout",)),
    ImageFilter(p_range=(0.3, 0.8), labels=("real",)),
    ImageFilter(name="img_0001"),
])
def test_counts_per_cell_match_a_brute_force_recount(view, flt):
    keep = mask(view, flt)
    expected_keep = np.array([
        (not flt.labels or ("real", "fake")[r["label"]] in flt.labels)
        and (not flt.outcomes or ("wrong", "right")[r["correct"]] in flt.outcomes)
        and (not flt.generators or r["generator"] in flt.generators)
        and (not flt.categories or r["category"] in flt.categories)
        and (not flt.splits or r["split"] in flt.splits)
        and flt.p_range[0] <= r["prob_fake"] <= flt.p_range[1]
        and flt.name.lower() in r["path"].rsplit("/", 1)[-1].lower()
        for r in view.records])
    assert (keep == expected_keep).all() and 0 < keep.sum() < view.n_images
    cc = cell_counts(view, keep)
    expected = brute_force_counts(view, keep)
    for k, cid in enumerate(cc.ids):
        assert cc.counts[k].tolist() == expected.get(int(cid), [0, 0, 0, 0])
        members = [i for i in view.cell_members(int(cid)) if keep[i]]
        assert cc.n[k] == len(members)
        if members:
            p = view.prob[members]
            assert cc.accuracy[k] == pytest.approx(view.correct[members].mean())
            assert cc.confidence[k] == pytest.approx(np.maximum(p, 1 - p).mean())
            logits = np.log(p / (1 - p))
            assert cc.boundary_distance[k] == pytest.approx(abs(np.arcsinh(logits.mean())), abs=1e-4)
            gens = [view.records[i]["generator"] for i in members]
            assert dict(zip(cc.generator_names, cc.generators[k].tolist())) == \
                {g: gens.count(g) for g in cc.generator_names}
        else:
            assert np.isnan(cc.accuracy[k]) and cc.mix(k) == ""


def test_p_range_is_inclusive_at_both_edges():
    cols = columns(np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert mask(cols, ImageFilter(p_range=(0.25, 0.75))).tolist() == [False, True, True, True, False]
    assert mask(cols, ImageFilter(p_range=(0.0, 0.0))).tolist() == [True, False, False, False, False]
    assert mask(cols, ImageFilter(p_range=(1.0, 1.0))).tolist() == [False, False, False, False, True]
    assert mask(cols, ImageFilter(p_range=(0.26, 0.74))).tolist() == [False, False, True, False, False]
    assert ImageFilter(p_range=(0.9, 0.1)).p_range == (0.1, 0.9)  # given backwards: sorted


def test_file_name_search_is_a_case_insensitive_part_of_the_name_only():
    cols = columns(np.full(4, 0.5), path=["gan/IMG_001.png", "gan/img_0012.PNG", "img_001/x.png", "b.jpg"])
    assert mask(cols, ImageFilter(name="img_001")).tolist() == [True, True, False, False]
    assert mask(cols, ImageFilter(name=".png")).tolist() == [True, True, True, False]
    assert mask(cols, ImageFilter(name="  B.JPG ")).tolist() == [False, False, False, True]
    hits, total = matching_images(mask(cols, ImageFilter(name="png")), limit=2)
    assert hits.tolist() == [0, 1] and total == 3


def test_generator_mix_and_empty_generators():
    gens = ["gan"] * 3 + ["diffusion"] * 2 + [""] * 5
    cols = columns(np.full(10, 0.5), cell=[0] * 5 + [1] * 5, generator=gens)
    assert NO_GENERATOR in cols.generator.values
    cc = cell_counts(cols)
    assert cc.mix(0) == "gan 60% · diffusion 40%"
    assert cc.mix(1) == "no generator 100%"
    assert cc.mix(2) == ""  # cell 2 has no image
    assert mask(cols, ImageFilter(generators=(NO_GENERATOR,))).tolist() == [False] * 5 + [True] * 5
    assert not mask(cols, ImageFilter(generators=("no such generator",))).any()
    many = columns(np.full(5, 0.5), generator=["a", "b", "c", "d", "d"])
    assert cell_counts(many).mix(0) == "d 40% · a 20% · b 20% · others 20%"


def test_json_round_trip_key_and_words():
    flt = ImageFilter(generators=("gan", "diffusion"), labels=("fake",), p_range=(0.4, 0.6), name="x")
    data = flt.to_json()
    assert data == {"generators": ["diffusion", "gan"], "labels": ["fake"], "p_range": [0.4, 0.6],
                    "name": "x"}
    assert ImageFilter.from_json(data) == flt
    assert ImageFilter(generators=("diffusion", "gan", "gan"), labels=("fake",), name=" x ",
                       p_range=(0.6, 0.4)).key() == flt.key() != ""
    assert ImageFilter().key() == ""
    assert flt.describe() == ('generator diffusion or gan · label fake · p(fake) 0.40–0.60 · '
                              'file name contains "x"')
    # whatever the browser sends, a filter comes out
    for junk in (None, [], "x", {"p_range": "bad"}, {"p_range": [0, float("nan")]}, {"name": 3},
                 {"labels": ["maybe"]}, {"unknown": 1}):
        assert ImageFilter.from_json(junk) == ImageFilter()
