"""pipeline.report: the findings sheet carries each note's evidence (maps, picked dimensions,
concepts, metrics, checks) from kept results only, a clean encoder header, and a PDF figure."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.explain.cache import ImageMaps, maps_result
from pipeline.explain.overlays import overlay_relevance, overlay_signed
from pipeline.explain.results import image_paths, read_kept_maps
from pipeline.model.run_models import model_fingerprint
from pipeline.report.evidence import (NO_MAPS, aggregate_overlay, build_sheet, dimension_overlay,
                                      fallback_cause)
from pipeline.report.findings import BIG, SMALL, findings_html
from pipeline.report.notes import NotesStore
from pipeline.store.run_store import open_store
from tests.fixtures_runs import fake_get_concepts

GRID, SIDE = 4, 32
GAIERROR = ("could not download ViT-B-32/openai: URLError(gaierror(-2, 'Name or service not known')) "
            "[Errno -2] Name or service not known")


def known_maps(index: int) -> ImageMaps:
    """Aggregate: left half of the patch grid towards fake (+1), right half towards real (-1);
    dimension k lights patch row k % 4; contribution of dimension k is (k - 8) / 10."""
    patch_maps = np.zeros((16, GRID, GRID), np.float32)
    for k in range(16):
        patch_maps[k, k % GRID, :] = 1.0
    aggregate = np.full((GRID, GRID), -1.0, np.float32)
    aggregate[:, : GRID // 2] = 1.0
    rgb = np.full((SIDE, SIDE, 3), 200, np.uint8)
    return ImageMaps(index, patch_maps, aggregate, np.arange(16, dtype=np.float32),
                     (np.arange(16, dtype=np.float32) - 8) / 10, 1.5, rgb)


def keep_maps(run, indices):
    """Keep known maps for ``indices`` as ``pipeline.explain.cache.get_maps`` keeps them."""
    store = open_store(run)
    records, cfg, fp = store.read_records(), store.config(), model_fingerprint(run)
    for i, path in zip(indices, image_paths(store, records, indices)):
        maps_result(run, i, records[i]["id"], cfg, path, fp).write(known_maps(i))


def decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), np.float32)


@pytest.fixture
def run(make_fake_run):
    return make_fake_run(n_images=24, n_cells=2, encoder_fallback=GAIERROR)


def test_kept_maps_are_read_never_computed(run):
    keep_maps(run, [0, 2])
    kept = read_kept_maps(run, [0, 1, 2, 99])
    assert sorted(kept) == [0, 2]  # 1 is not computed, 99 not in the run: left out, nothing computed
    assert kept[2].logit == 1.5 and np.array_equal(kept[2].aggregate_patch, known_maps(2).aggregate_patch)
    assert not (run / "relevance" / f"{open_store(run).read_records()[1]['id']}.npz").exists()


def test_the_overlays_are_those_of_the_kept_maps(run):
    keep_maps(run, [0])
    kept = read_kept_maps(run, [0])[0]
    full = known_maps(0)
    assert np.array_equal(np.asarray(aggregate_overlay(kept)), np.asarray(overlay_signed(full.rgb, full.aggregate)))
    agg = np.asarray(aggregate_overlay(kept), np.float32)
    assert agg[:, 0].mean(0)[0] > agg[:, 0].mean(0)[2] and agg[:, -1].mean(0)[2] > agg[:, -1].mean(0)[0]
    assert np.allclose(np.asarray(dimension_overlay(kept, 5), np.float32),
                       np.asarray(overlay_relevance(full.rgb, full.maps[5]), np.float32), atol=1)


def test_each_note_carries_its_maps_dims_and_the_missing_ones_say_so(run):
    keep_maps(run, [0, 2])
    NotesStore(run).add("halo around the hair", tag="hair", images=[0, 1, 2], dims=[3, 12])
    page = findings_html(run, run.parent.parent / "cache")
    assert page.count('class="row evidence"') == 3
    assert page.count(NO_MAPS) == 1  # image 1 has no kept maps
    assert 'data-index="1"' in page and page.count('data-map="aggregate"') == 2
    assert page.count('data-map="d03"') == 2 and page.count('data-map="d12"') == 2
    # dimension 3 contributes (3 - 8) / 10 = -0.50, dimension 12 +0.40; the logit is +1.50
    assert page.count("dimension 3, contribution<br><span class=\"neg\">-0.50</span>") == 2
    assert page.count("dimension 12, contribution<br><span class=\"pos\">+0.40</span>") == 2
    assert "· dimensions 3, 12" in page and "logit <span class=\"pos\">+1.50</span>" in page
    # the aggregate map embedded is the signed overlay of the known map: left orange, right blue
    uri = re.search(r'data-map="aggregate"><img src="([^"]+)"', page).group(1)
    shown = decode(uri)
    expected = np.asarray(overlay_signed(known_maps(0).rgb, known_maps(0).aggregate).resize((BIG, BIG)), np.float32)
    assert shown.shape == (BIG, BIG, 3) and np.abs(shown - expected).mean() < 3  # JPEG
    dim = decode(re.search(r'data-map="d03"><img src="([^"]+)"', page).group(1))
    assert dim.shape == (SMALL, SMALL, 3)


def test_a_cell_note_shows_the_cell_s_concepts_when_kept(run):
    NotesStore(run).add("grass everywhere", cell=1)
    NotesStore(run).add("nothing computed here", cell=0)
    fake_get_concepts(run, 1)  # 3 concepts of 6, 4, 2 segments, 2 patches each
    page = findings_html(run, run.parent.parent / "cache")
    assert page.count("data-concept=") == 3 and page.count("alt='concept 1 patch'") == 2
    assert "concept 1: 6 segments from 6 images (3 from real, 3 from fake images)" in page
    assert "Concepts of cell 0: not computed yet" in page
    # a cell of 12 images: 8 with evidence rows, 4 as thumbnails
    cell1 = page.split("grass everywhere")[1].split("nothing computed here")[0]
    assert cell1.count('class="row evidence"') == 8 and cell1.count('figure class="thumb') == 4


def test_the_header_says_why_the_stand_in_was_used_in_a_sentence(run):
    page = findings_html(run, run.parent.parent / "cache")
    header = page.split("<details>")[0]
    assert "The stand-in encoder vit_small_patch14_dinov2 was used instead of CLIP: CLIP weights could not " \
           "be downloaded (no network access)." in header
    assert "gaierror" not in header and "gaierror" in page.split("<details>")[1]  # folded away, kept
    assert fallback_cause("No module named 'open_clip'") == "the open_clip package is not installed"


def test_the_header_carries_metrics_with_intervals_and_the_checks(run):
    sheet = build_sheet(run, run.parent.parent / "cache")
    head = open_store(run).read_meta()["metrics"]["head"]
    lo, hi = head["ci95"]["accuracy"]
    assert sheet.metrics[0] == ("held-out accuracy", f"{head['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]")
    assert sheet.checks and sheet.checks[0].startswith("data checks")
    page = findings_html(run, run.parent.parent / "cache")
    assert "held-out AUC" in page and "data checks" in page


def test_metrics_show_their_95_intervals(make_fake_run):
    run = make_fake_run(n_images=12, n_cells=2)
    meta_path = run / "meta.json"
    from pipeline.store.run_store import RunStore
    store = RunStore(run)
    meta = store.read_meta()
    meta["metrics"]["head"]["ci95"] = {"accuracy": [0.5, 0.75]}
    from pipeline.store.run_store import atomic_write_json
    atomic_write_json(meta_path, meta)
    sheet = build_sheet(run, run.parent.parent / "cache")
    acc = dict(sheet.metrics)["held-out accuracy"]
    assert acc.endswith("[0.500, 0.750]")
    assert "stand-in" not in sheet.encoder and sheet.fallback_reason is None


def test_notes_keep_their_dims_and_old_notes_still_load(run):
    store = NotesStore(run)
    old = store.add("no dims", cell=0)
    new = store.add("dims", cell=0, dims=[12, 3, 12])
    assert "dims" not in old and store.get(new["id"])["dims"] == [12, 3]
    with pytest.raises(ValueError, match=r"0..15 \(got \[16\]\)"):
        store.add("x", cell=0, dims=[16])
    import json
    exported = {n["id"]: n for n in json.loads(store.export_json())["notes"]}
    assert exported[new["id"]]["dims"] == [12, 3]
    assert "12 3" in store.export_csv()


# -- the PDF figure -----------------------------------------------------------------------------------
def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


def pdf_images(data: bytes) -> int:
    """Distinct pictures embedded (fpdf2 embeds a picture drawn twice once)."""
    return len(re.findall(rb"/Subtype\s*/Image", data))


def test_the_pdf_figure_holds_the_notes_pictures_and_maps(run):
    from pipeline.report.findings_pdf import findings_pdf

    keep_maps(run, [0, 2])
    NotesStore(run).add("halo around the hair", tag="hair", images=[0, 1, 2], dims=[3, 12])
    data = findings_pdf(run, run.parent.parent / "cache")
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert pdf_pages(data) == 1
    # images 0 and 2 share their known model input, aggregate and dimension maps: the input, the
    # aggregate, dimension 3, dimension 12, and image 1's thumbnail (no maps) are 5 pictures
    assert pdf_images(data) == 5
    assert b"DejaVu" in data  # the font is embedded


def test_a_long_note_list_flows_onto_more_pages(run):
    from pipeline.report.findings_pdf import findings_pdf

    for cell in (0, 1):
        NotesStore(run).add(f"cell {cell}", cell=cell)  # 12 images each: 8 evidence rows + 4 thumbnails
    data = findings_pdf(run, run.parent.parent / "cache")
    assert pdf_pages(data) >= 2 and pdf_images(data) == 24  # every image once (none has maps)


def test_the_pdf_needs_the_dejavu_fonts_and_says_so(run, tmp_path):
    from pipeline.report.findings_pdf import findings_pdf

    with pytest.raises(FileNotFoundError, match=r"DejaVuSans.ttf.*fonts-dejavu-core"):
        findings_pdf(run, run.parent.parent / "cache", font_dir=tmp_path / "no-fonts")


def test_the_command_line_writes_the_figure_and_the_page(run, tmp_path, capsys):
    from pipeline.cli.main import main

    NotesStore(run).add("halo", images=[0])
    out = tmp_path / "out"
    assert main(["findings", str(run), "--pdf", str(out / "f.pdf"), "--html", str(out / "f.html")]) == 0
    assert (out / "f.pdf").read_bytes().startswith(b"%PDF-") and pdf_pages((out / "f.pdf").read_bytes()) == 1
    assert "halo" in (out / "f.html").read_text() and str(out / "f.pdf") in capsys.readouterr().out
    assert main(["findings", str(run)]) == 2  # nowhere to write: a clear error
    assert "--pdf OUT.pdf and/or --html OUT.html" in capsys.readouterr().err
