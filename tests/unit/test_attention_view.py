"""The attention matrix (``app.views.attention``): its columns are ordered by the run's own
contributions before the first map and never move; each image shows one p(fake), and the maps'
own logit only where their forward pass gives another, labelled with its precision."""
from __future__ import annotations

import numpy as np
import pytest

from app.state.context import AppContext
from app.views import attention
from pipeline.store.run_store import HEAD, RunStore
from tests.fixtures_runs import FAKE_EXPLAIN
from tests.unit.test_app_callbacks import _find, _texts
from tests.unit.test_explain_contributions import save_head, toy_head

# the head's output layer: distinct magnitudes, both signs
WEIGHTS = np.array([0.3, -1.2, 0.05, 2.0, -0.7, 0.9, -0.15, 1.4, -2.2, 0.6, 0.1, -0.45, 1.1, -1.7, 0.25, 0.8])
BF16 = {"precision": "bf16", "maps_precision": "fp32"}
FP32 = {"precision": "fp32", "maps_precision": "fp32"}


def test_one_number_when_the_maps_forward_agrees_with_the_run():
    # p 0.685 is logit +0.78; the maps' pass gives the same to the rounding shown
    lines = attention.logit_lines(0.685, 0.7770, 0.7774, FP32)
    assert [text for text, _ in lines] == ["logit +0.78 (> 0 = fake)"]
    assert "p(fake) 0.685" in lines[0][1]
    [(text, why)] = attention.logit_lines(0.685, 0.7770, None, BF16)  # no maps yet: the run's alone
    assert text == "logit +0.78 (> 0 = fake)" and "bf16 embedding" in why


def test_both_numbers_labelled_when_the_run_embedded_in_bf16():
    # the analyst's row: the run (bf16) says p 0.685, the maps' fp32 pass logit +0.72 (p 0.673)
    lines = attention.logit_lines(0.685, 0.7770, 0.72, BF16)
    assert [text for text, _ in lines] == ["logit +0.78 (> 0 = fake)",
                                           "maps (fp32 forward): logit +0.72, p 0.673"]
    why = lines[1][1]
    assert "embedded its images in bf16" in why and "p(fake) 0.685" in why
    assert "need gradients" in why and "ran in fp32" in why


def test_both_numbers_in_one_precision_name_another_cause():
    lines = attention.logit_lines(0.685, 0.7770, 0.72, FP32)
    assert lines[1][0] == "maps (fp32 forward): logit +0.72, p 0.673"
    assert "image file may have changed" in lines[1][1]


@pytest.fixture
def ctx(make_fake_run, app_config):
    run = make_fake_run(n_images=30, n_cells=3)
    save_head(toy_head(WEIGHTS), run / HEAD)
    return AppContext(app_config)


def _order(content) -> list[int]:
    return [int(h.to_plotly_json()["props"]["data-dim"]) for h in _find(content, "fx-attn-head")]


def test_columns_are_known_before_the_first_map_and_never_move(ctx):
    chosen = [0, 2, 4, 6]
    view = ctx.run("fake-run")
    z = np.asarray(RunStore(view.path).load_array("z16"), dtype=np.float64)[chosen]
    run_values = z * WEIGHTS  # contribution_k = w_k * z_k, from the run's own z16
    expected = np.argsort(-np.abs(run_values).mean(axis=0), kind="stable").tolist()
    content, _, message, request = attention.JOB.render(ctx, {"ids": chosen}, "fake-run", 0, pending=None)
    assert "Computing" in message and len(_find(content, "fx-attn-error")) == 4  # no map yet
    assert _order(content) == expected
    heads = _find(content, "fx-attn-head")
    top = expected[0]
    assert f"{run_values[:, top].mean():+.2f}" in _texts(heads[0])
    assert f"d{top}: mean contribution {run_values[:, top].mean():+.3f}" in heads[0].title

    seen = []

    def push(value):  # the matrix while rows arrive, one image per pass
        (children, _), _ = attention.partial_rows(ctx, value)
        seen.append((len(_find(children, "fx-attn-error")), _order(children)))

    attention.compute(ctx, view, request, lambda *a: None, explain=FAKE_EXPLAIN, partial=push)
    assert [n for n, _ in seen] == [3, 2, 1, 0] and all(order == expected for _, order in seen)
    final, _, _ = attention.JOB.prepare(ctx, request, lambda *a: None, explain=FAKE_EXPLAIN)
    assert _order(final) == expected
    # the fake maps carry other contributions (-1..1): the rows show the run's, as the header
    row0 = [d for d in _find(final, "fx-attn-dim") if d.to_plotly_json()["props"]["data-index"] == "0"]
    assert [_texts(d) for d in row0] == [f"{run_values[0, k]:+.2f}" for k in expected]
    # one p(fake) per image (the run's); the fake maps' logit (+2.00) differs and is labelled
    big = _texts(_find(final, "fx-attn-big"))
    assert f"p(fake) {view.prob[0]:.3f}" in big and f"logit {view.logit[0]:+.2f} (> 0 = fake)" in big
    assert "maps (fp32 forward): logit +2.00, p 0.881" in big


def test_a_bf16_run_labels_the_maps_logit_with_the_precisions_of_its_meta(ctx):
    view = ctx.run("fake-run")
    assert view.precision == FP32  # a run whose meta.json says nothing: fp32
    view.meta["encoder"]["extra"] = {"precision": "bf16", "maps_precision": "fp32", "precision_reason": "cuda"}
    assert view.precision == BF16
    request = attention.JOB.render(ctx, {"ids": [0]}, "fake-run", 0)[-1]
    final, _, _ = attention.JOB.prepare(ctx, request, lambda *a: None, explain=FAKE_EXPLAIN)
    [maps_line] = _find(final, "fx-attn-maps-logit")
    assert _texts(maps_line) == "maps (fp32 forward): logit +2.00, p 0.881"
    assert "embedded its images in bf16" in maps_line.title
