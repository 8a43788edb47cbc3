"""app.files.routes: files are served by run id and integers only; browser paths are never opened."""
import csv
import io

import pytest
from PIL import Image

from app.files import urls
from app.main import create_app
from app.state.context import AppContext
from app.views import images
from pipeline.report.notes import NotesStore
from pipeline.store.run_store import RunStore
from tests.fixtures_runs import image_colour


@pytest.fixture
def client(make_fake_run, app_config, tmp_path):
    make_fake_run(n_images=10, n_cells=2)
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "secret.png")
    app = create_app(app_config)
    return app.server.test_client()


def test_thumbnail_is_served_with_caching_headers(client):
    r = client.get("/files/thumb/fake-run/3.jpg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert "max-age=604800" in r.headers["Cache-Control"] and r.headers.get("ETag")
    im = Image.open(io.BytesIO(r.data)).convert("RGB")
    assert max(abs(a - b) for a, b in zip(im.getpixel((64, 64)), image_colour(3, 1))) < 12
    again = client.get("/files/thumb/fake-run/3.jpg", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("url", [
    "/files/thumb/fake-run/../../secret.txt",
    "/files/thumb/fake-run/..%2F..%2Fsecret.png",
    "/files/thumb/fake-run/%2e%2e/%2e%2e/secret.png",
    "/files/thumb/fake-run//etc/passwd",
    "/files/thumb/fake-run/%2Fetc%2Fpasswd",
    "/files/thumb/..%2Fruns%2Ffake-run/1.jpg",
    "/files/thumb/fake-run/-1.jpg",
    "/files/thumb/fake-run/1.5.jpg",
    "/files/thumb/ghost/1.jpg",
    "/files//etc/passwd",
    "/files/sprite/fake-run/..%2F..%2Fsecret.jpg",
    "/files/attn/fake-run/0/..%2Fsecret.jpg",
    "/files/concept/fake-run/0/0/../../secret.png",
])
def test_paths_from_the_browser_are_refused(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert b"TOP SECRET" not in r.data and r.mimetype != "image/jpeg"


def test_index_outside_the_run_and_records_outside_the_root_are_refused(client, tmp_path):
    assert client.get("/files/thumb/fake-run/10.jpg").status_code == 403
    store = RunStore(tmp_path / "runs" / "fake-run")
    records = store.read_records()
    records[2]["path"] = "../secret.png"
    store.write_records(records)
    store.update_meta(status="complete")  # new meta mtime: the app reloads the run
    assert client.get("/files/thumb/fake-run/2.jpg").status_code == 403


def test_sprite_and_attention_files_come_from_the_app_cache_only(client, tmp_path):
    assert client.get("/files/sprite/fake-run/0123456789abcdef0123.jpg").status_code == 404
    assert client.get("/files/attn/fake-run/0/d00.jpg").status_code == 404
    assert client.get("/files/attn/fake-run/0/passwd.jpg").status_code == 404


def test_notes_export_routes(client, tmp_path):
    run = tmp_path / "runs" / "fake-run"
    NotesStore(run).add("fools the model", tag="grass", images=[4])
    r = client.get("/files/notes/fake-run.csv")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.data.decode())))
    assert rows[0]["text"] == "fools the model"
    assert rows[0]["image_path"] == RunStore(run).read_records()[4]["path"]
    assert client.get("/files/notes/fake-run.json").json["notes"][0]["tag"] == "grass"
    assert client.get("/files/notes/fake-run.txt").status_code == 404
    assert client.get("/files/notes/ghost.csv").status_code == 404


def test_findings_sheet_shows_each_note_with_its_images(client, tmp_path):
    import base64
    import re

    run = tmp_path / "runs" / "fake-run"
    records = RunStore(run).read_records()
    NotesStore(run).add("grass of <low> resolution", tag="grass", images=[4, 7])
    NotesStore(run).add("the whole cell fools it", cell=1)
    r = client.get("/files/notes/fake-run.html")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.data.decode()
    assert "grass of &lt;low&gt; resolution" in page and ">grass</span>" in page  # escaped text, tag
    assert "2 selected images" in page and "cell 1" in page
    note = page[page.index("grass of"):page.index("the whole cell")]
    thumbs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', note)
    assert len(thumbs) == 2  # the note's own two images, embedded: the page stands alone
    im = Image.open(io.BytesIO(base64.b64decode(thumbs[0]))).convert("RGB")
    assert max(abs(a - b) for a, b in zip(im.getpixel((64, 64)), image_colour(4, records[4]["label"]))) < 12
    words = ("real", "fake")
    assert f'<span class="b {words[records[4]["label"]]}">' in note
    n_cell = sum(r["cell"] == 1 for r in records)
    assert page.count("<figure") == 2 + min(n_cell, 24)


# -- the URL builders (app.files.urls) --------------------------------------------------------------
def _route_of(client, url):
    """(endpoint, arguments) of the Flask route that serves ``url``."""
    return client.application.url_map.bind("localhost").match(url)


@pytest.mark.parametrize("url, endpoint, args", [
    (urls.thumb("fake-run", 3), "thumbnail", {"run_id": "fake-run", "index": 3}),
    (urls.sprite("fake-run", "0123456789abcdef0123"), "sprite", {"run_id": "fake-run", "key": "0123456789abcdef0123"}),
    (urls.attention("fake-run", 2, "d03"), "attention", {"run_id": "fake-run", "index": 2, "name": "d03"}),
    (urls.image("fake-run", 4), "original", {"run_id": "fake-run", "index": 4}),
    (urls.layer("fake-run", 5, "aggregate"), "layer", {"run_id": "fake-run", "index": 5, "name": "aggregate"}),
    (urls.concept_patch("fake-run", 1, 2, 3), "concept_patch", {"run_id": "fake-run", "cell": 1, "k": 2, "j": 3}),
    (urls.notes_export("fake-run", "csv"), "notes_export", {"run_id": "fake-run", "fmt": "csv"}),
    (urls.notes_export("fake-run", "json"), "notes_export", {"run_id": "fake-run", "fmt": "json"}),
    (urls.notes_export("fake-run", "html"), "notes_export", {"run_id": "fake-run", "fmt": "html"}),
    (urls.findings_pdf("fake-run"), "findings_figure", {"run_id": "fake-run"}),
    (urls.image("fake-run@set", 0), "original", {"run_id": "fake-run@set", "index": 0}),  # an applied set
])
def test_each_url_builder_is_served_by_its_route(client, url, endpoint, args):
    assert url.startswith(urls.PREFIX)
    assert _route_of(client, url) == (f"faxplainer_files.{endpoint}", args)


def test_built_urls_are_answered_with_their_files(client, app_config):
    assert client.get(urls.thumb("fake-run", 3)).mimetype == "image/jpeg"
    r = client.get(urls.image("fake-run", 3))
    assert r.status_code == 200 and r.mimetype.startswith("image/")
    for fmt, mimetype in (("csv", "text/csv"), ("json", "application/json"), ("html", "text/html")):
        r = client.get(urls.notes_export("fake-run", fmt))
        assert r.status_code == 200 and r.mimetype == mimetype
    with pytest.raises(ValueError):
        urls.notes_export("fake-run", "txt")
    r = client.get(urls.findings_pdf("fake-run"))
    assert r.status_code == 200 and r.mimetype == "application/pdf" and r.data.startswith(b"%PDF-")
    assert client.get(urls.findings_pdf("ghost")).status_code == 404
    # the image view's sprite: the URL the view puts in its figure is served
    ctx = AppContext(app_config)
    request = images.JOB.render(ctx, 0, "fake-run", None)[-1]
    fig = images.JOB.prepare(ctx, request, lambda *_: None)[0]
    source = fig.layout.images[0].source
    assert _route_of(client, source)[0] == "faxplainer_files.sprite"
    r = client.get(source)
    assert r.status_code == 200 and r.mimetype == "image/jpeg"


def test_no_view_writes_a_file_url_by_hand():
    import re
    from pathlib import Path

    import app.views

    for path in Path(app.views.__file__).parent.glob("*.py"):
        code = re.sub(r'"""(?:.|\n)*?"""', "", path.read_text())  # docstrings may name a URL shape
        assert "/files/" not in code, f"{path.name} writes a /files/ URL: use app.files.urls"


def test_the_browsers_thumbnail_url_has_the_builders_shape():
    from pathlib import Path

    # assets/clientside.js builds the tooltip's thumbnail URL in the browser, as urls.thumb does
    js = (Path(__file__).resolve().parents[2] / "assets" / "clientside.js").read_text()
    assert '"/files/thumb/" + encodeURIComponent(run) + "/" + parseInt(index, 10) + ".jpg"' in js
    assert urls.thumb("RUN", 7) == "/files/thumb/" + "RUN" + "/" + str(7) + ".jpg"
