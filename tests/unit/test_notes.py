"""pipeline.report.notes: notes persist, concurrent writers lose nothing, exports carry image paths."""
import csv
import io
import json
import multiprocessing as mp

import pytest

from pipeline.report.notes import NotesStore
from pipeline.store.run_store import ArtifactError, RunStore


@pytest.fixture
def run(make_fake_run):
    return make_fake_run(n_images=12, n_cells=3)


def test_notes_persist_across_instances(run):
    a = NotesStore(run).add("bird in yellow grass, fools the model", tag="grass", cell=1)
    b = NotesStore(run).add("blurry backgrounds", images=[5, 2, 5])
    notes = NotesStore(run).list()  # a new instance reads the file, as after a restart
    assert [n["id"] for n in notes] == [a["id"], b["id"]]
    assert notes[0]["text"] == "bird in yellow grass, fools the model" and notes[0]["tag"] == "grass"
    assert notes[1]["images"] == [2, 5] and notes[1]["cell"] is None
    assert [n["id"] for n in NotesStore(run).list(cell=1)] == [a["id"]]
    assert json.loads((run / "notes.json").read_text())["notes"][0]["cell"] == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(text="   ", cell=1), "needs some text"),
    (dict(text="x"), "attach the note"),
    (dict(text="x" * 2001, cell=1), "at most 2000"),
    (dict(text="x", tag="t" * 41, cell=1), "at most 40"),
])
def test_bad_notes_are_refused_with_a_reason(run, kwargs, message):
    with pytest.raises(ValueError, match=message):
        NotesStore(run).add(**kwargs)
    assert NotesStore(run).list() == []


def test_delete(run):
    store = NotesStore(run)
    keep = store.add("keep", cell=0)
    gone = store.add("gone", cell=0)
    assert store.delete(gone["id"]) is True
    assert store.delete(gone["id"]) is False
    assert [n["id"] for n in store.list()] == [keep["id"]]


def _writer(run_dir, worker, count):
    store = NotesStore(run_dir)
    for i in range(count):
        store.add(f"worker {worker} note {i}", cell=worker)


def test_concurrent_writers_lose_no_note(run):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(run, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    texts = {n["text"] for n in NotesStore(run).list()}
    assert texts == {f"worker {w} note {i}" for w in range(3) for i in range(15)}


def test_exports_list_each_note_with_its_image_paths(run):
    store = NotesStore(run)
    records = RunStore(run).read_records()
    root = RunStore(run).read_meta()["data"]["root"]
    on_images = store.add("two fakes", tag="t1", images=[3, 1])
    on_cell = store.add("the whole cell", cell=2)
    rows = list(csv.DictReader(io.StringIO(store.export_csv())))
    image_rows = [r for r in rows if r["note_id"] == on_images["id"]]
    assert [int(r["image_index"]) for r in image_rows] == [1, 3]
    assert [r["image_path"] for r in image_rows] == [records[1]["path"], records[3]["path"]]
    assert image_rows[0]["abs_path"] == f"{root}/{records[1]['path']}"
    assert image_rows[0]["tag"] == "t1" and image_rows[0]["scope"] == "images"
    cell_rows = [r for r in rows if r["note_id"] == on_cell["id"]]
    expected = [i for i, r in enumerate(records) if r["cell"] == 2]
    assert [int(r["image_index"]) for r in cell_rows] == expected and expected
    assert all(r["scope"] == "cell" and r["cell"] == "2" for r in cell_rows)

    data = json.loads(store.export_json())
    by_id = {n["id"]: n for n in data["notes"]}
    assert [f["path"] for f in by_id[on_images["id"]]["image_files"]] == \
        [records[1]["path"], records[3]["path"]]
    assert len(by_id[on_cell["id"]]["image_files"]) == len(expected)


def test_a_corrupted_notes_file_is_reported_and_left_alone(run):
    (run / "notes.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupted"):
        NotesStore(run).list()
    with pytest.raises(ArtifactError):
        NotesStore(run).add("x", cell=0)
    assert (run / "notes.json").read_text() == "{not json"


def test_a_note_keeps_its_author_in_the_list_and_both_exports(run):
    store = NotesStore(run)
    by_alice = store.add("halo around the hair", cell=1, author="alice")
    anonymous = store.add("single-user note", images=[2])  # the local app has no login
    assert by_alice["author"] == "alice" and "author" not in anonymous
    assert [n.get("author") for n in NotesStore(run).list()] == ["alice", None]
    rows = list(csv.DictReader(io.StringIO(store.export_csv())))
    assert {r["author"] for r in rows if r["note_id"] == by_alice["id"]} == {"alice"}
    assert [r["author"] for r in rows if r["note_id"] == anonymous["id"]] == [""]
    exported = {n["id"]: n for n in json.loads(store.export_json())["notes"]}
    assert exported[by_alice["id"]]["author"] == "alice" and "author" not in exported[anonymous["id"]]
    with pytest.raises(ValueError, match="at most 64"):
        store.add("x", cell=1, author="a" * 65)


def test_the_findings_sheet_names_each_note_s_author(run, tmp_path):
    from pipeline.report.findings import findings_html

    NotesStore(run).add("halo around the hair", cell=1, author="alice")
    NotesStore(run).add("nobody's", cell=2)
    page = findings_html(run, tmp_path / "cache")
    assert page.count("· by alice") == 1 and "halo around the hair" in page
