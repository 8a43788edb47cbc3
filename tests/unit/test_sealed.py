"""Derived files carry their own checksum: damaged ones are computed again, never served."""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from app.files import artifacts
from app.state.context import AppContext
from app.main import create_app
from pipeline.store.sealed import is_intact, read_sealed, read_sealed_json, seal, unseal, write_sealed_json
from tests.fixtures_runs import fake_get_maps


def damage(path, at=0.5):
    """Flip one byte of ``path`` and give it a new mtime, as a bad disk block or a partial copy."""
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * at)] ^= 0xFF
    path.write_bytes(bytes(raw))
    later = time.time_ns() + 10**9
    os.utime(path, ns=(later, later))


def test_seal_round_trip_and_any_changed_byte_is_caught():
    data = os.urandom(1000)
    blob = seal(data)
    assert unseal(blob) == data
    for i in (0, 500, 999, len(blob) - 2):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        assert unseal(bytes(bad)) is None
    assert unseal(data) is None  # never sealed
    assert unseal(blob[:-10]) is None  # cut short


def test_sealed_pictures_decode_as_the_plain_ones():
    rgb = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt)
        plain = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        sealed = np.asarray(Image.open(io.BytesIO(seal(buf.getvalue()))).convert("RGB"))
        assert np.array_equal(plain, sealed)


def test_damaged_json_reads_as_missing(tmp_path):
    path = tmp_path / "ready.json"
    write_sealed_json(path, {"cell": 3, "n": 120})
    assert read_sealed_json(path) == {"cell": 3, "n": 120}
    text = path.read_bytes().replace(b"120", b"121")  # still valid JSON, but not what was written
    path.write_bytes(text)
    assert read_sealed_json(path) is None and read_sealed(path) is None


@pytest.fixture
def ctx(make_fake_run, app_config):
    make_fake_run(n_images=30, n_cells=3)
    return AppContext(app_config)


def test_damaged_sprite_makes_the_grid_not_ready(ctx, app_config):
    view = ctx.run("fake-run")
    cache = ctx.app_cache(view)
    grid = artifacts.prepare_grid(view, cache, 1)
    assert artifacts.read_grid(cache, 1) == grid
    client = create_app(app_config).server.test_client()
    url = f"/files/sprite/fake-run/{grid['sprite']}.jpg"
    assert client.get(url).status_code == 200
    damage(artifacts.sprite_path(cache, grid["sprite"]))
    assert client.get(url).status_code == 404
    assert artifacts.read_grid(cache, 1) is None  # the image view prepares it again
    again = artifacts.prepare_grid(view, cache, 1)
    assert artifacts.read_grid(cache, 1) == again


def test_damaged_overlay_is_not_served_and_is_drawn_again(ctx, app_config):
    view = ctx.run("fake-run")
    cache = ctx.app_cache(view)
    assert artifacts.prepare_attention(view, cache, [4, 5], fake_get_maps) == [4, 5]
    client = create_app(app_config).server.test_client()
    assert client.get("/files/attn/fake-run/4/d03.jpg").status_code == 200
    damage(artifacts.attention_dir(cache, 4) / "d03.jpg")
    assert client.get("/files/attn/fake-run/4/d03.jpg").status_code == 404
    assert artifacts.read_attention(cache, 4) is None and artifacts.read_attention(cache, 5)
    assert artifacts.prepare_attention(view, cache, [4, 5], fake_get_maps) == [4]  # only the damaged
    r = client.get("/files/attn/fake-run/4/d03.jpg")
    assert r.status_code == 200 and unseal(r.data) is not None


def test_damaged_thumbnail_is_made_again_before_it_is_served(ctx, app_config):
    client = create_app(app_config).server.test_client()
    first = client.get("/files/thumb/fake-run/2.jpg")
    assert first.status_code == 200 and unseal(first.data) is not None
    path = ctx.run("fake-run").images.thumbnail_path(2)
    damage(path, at=0.3)
    assert not is_intact(path)
    again = client.get("/files/thumb/fake-run/2.jpg")
    assert again.status_code == 200 and again.data == first.data and is_intact(path)
