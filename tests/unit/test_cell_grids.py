"""app.files.cell_grids: every cell's grid made with the run, so that a cell click is a file read."""
from __future__ import annotations

import dataclasses

from app.files import artifacts, cell_grids
from app.state.context import AppContext
from app.views import images


def test_every_grid_is_made_largest_cell_first_and_then_only_read(make_fake_run, app_config, monkeypatch):
    make_fake_run(cell_sizes=[3, 9, 5, 1])
    ctx = AppContext(app_config)
    view = ctx.run("fake-run")
    made = []
    prepare = artifacts.prepare_grid
    monkeypatch.setattr(artifacts, "prepare_grid",
                        lambda v, cache, cell, *a: made.append(int(cell)) or prepare(v, cache, cell, *a))
    summary = cell_grids.prepare_every_grid(ctx, "fake-run")
    sizes = {c: len(view.cell_members(c)) for c in view.cell_ids()}
    assert [sizes[c] for c in made] == [9, 5, 3, 1]
    assert (summary["cells"], summary["made"], summary["failed"]) == (4, 4, 0)
    for cell in view.cell_ids():  # a click now draws the grid from disk: no job
        grid = artifacts.read_grid(ctx.app_cache(view), cell)
        assert sorted(i for i in grid["order"] if i >= 0) == sorted(view.cell_members(cell).tolist())
        assert isinstance(images.show(ctx, cell, "fake-run", None), images.Ready)
    assert cell_grids.prepare_every_grid(ctx, "fake-run")["made"] == 0


def test_a_cell_that_fails_is_left_for_later_and_the_others_are_made(make_fake_run, app_config, monkeypatch):
    make_fake_run(cell_sizes=[4, 6])
    ctx = AppContext(app_config)
    view = ctx.run("fake-run")
    bad = max(view.cell_ids(), key=lambda c: len(view.cell_members(c)))
    prepare = artifacts.prepare_grid

    def fails_on_bad(v, cache, cell, *a):
        if cell == bad:
            raise OSError("disk full")
        return prepare(v, cache, cell, *a)

    monkeypatch.setattr(artifacts, "prepare_grid", fails_on_bad)
    summary = cell_grids.prepare_every_grid(ctx, "fake-run")
    assert (summary["made"], summary["failed"]) == (1, 1)
    assert artifacts.read_grid(ctx.app_cache(view), bad) is None
    assert isinstance(images.show(ctx, bad, "fake-run", None), images.Job)  # made when opened


def test_only_runs_up_to_the_limit_get_their_grids_with_the_run(make_fake_run, app_config):
    make_fake_run(n_images=20, n_cells=2)
    small = dataclasses.replace(app_config, server=dataclasses.replace(
        app_config.server, grids_with_run_max_images=20))
    assert cell_grids.grids_with_run(small, "fake-run")["made"] == 2
    make_fake_run(n_images=21, n_cells=2, run_id="larger")
    assert cell_grids.grids_with_run(small, "larger") is None
    view = AppContext(small).run("larger")
    assert all(artifacts.read_grid(AppContext(small).app_cache(view), c) is None for c in view.cell_ids())


def test_the_command_line_makes_them_for_a_run_made_elsewhere(make_fake_run, app_config, tmp_path, capsys):
    make_fake_run(n_images=12, n_cells=3)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"runs_dir: {app_config.runs_path}\ncache_dir: {app_config.cache_path}\n")
    assert cell_grids.main(["fake-run", "--config", str(config)]) == 0
    assert "3 of 3 grids made" in capsys.readouterr().out
    assert cell_grids.main(["no-such-run", "--config", str(config)]) == 2
