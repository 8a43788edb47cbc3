"""Overlays stay readable on any photo (the demo's yellow flowers hid the old ones)."""
import numpy as np
import pytest

from pipeline.explain.overlays import overlay_relevance, overlay_signed

COLOURS = {"yellow": (255, 220, 0), "orange": (250, 140, 20), "white": (255, 255, 255),
           "black": (0, 0, 0), "blue": (30, 60, 200), "green": (40, 160, 60)}


@pytest.mark.parametrize("colour", COLOURS.values(), ids=COLOURS.keys())
def test_relevant_areas_stand_out_from_the_rest_on_any_colour(colour):
    rgb = np.zeros((8, 20, 3), np.uint8) + np.array(colour, np.uint8)
    rel = np.zeros((8, 20), np.float32)
    rel[:, 10:] = np.linspace(0.5, 1.0, 10)[None]  # left half irrelevant, right half 0.5 .. 1
    out = np.asarray(overlay_relevance(rgb, rel), np.float32)
    background = out[:, :10].reshape(-1, 3).mean(axis=0)
    assert np.linalg.norm(out[:, 10:] - background, axis=2).min() > 55  # RGB distance
    # the photo stays visible where nothing is relevant: brighter photos give brighter grey
    assert np.allclose(out[:, :10], out[0, 0], atol=1)


@pytest.mark.parametrize("colour", COLOURS.values(), ids=COLOURS.keys())
def test_signed_map_shows_fake_and_real_evidence_on_any_colour(colour):
    rgb = np.zeros((4, 30, 3), np.uint8) + np.array(colour, np.uint8)
    signed = np.zeros((4, 30), np.float32)
    signed[:, :10], signed[:, 20:] = -1.0, 1.0  # real evidence | nothing | fake evidence
    out = np.asarray(overlay_signed(rgb, signed), np.float32)
    real, none, fake = out[0, 5], out[0, 15], out[0, 25]
    assert fake[0] > fake[2] and real[2] > real[0]  # orange for fake, blue for real
    assert min(np.linalg.norm(fake - none), np.linalg.norm(real - none),
               np.linalg.norm(fake - real)) > 80


def test_brightness_order_of_the_photo_is_kept_under_the_overlay():
    ramp = np.repeat(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], 3, axis=2)
    out = np.asarray(overlay_relevance(ramp, np.zeros((1, 16), np.float32)), np.float32)[0, :, 0]
    assert np.all(np.diff(out) >= 0) and out[-1] - out[0] > 120
