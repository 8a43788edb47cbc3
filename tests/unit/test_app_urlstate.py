"""app.state.urlstate: the view state survives a round trip through the query string."""
import pytest

from app.state.urlstate import ViewState, format_ids, format_search, parse_ids, parse_search, with_cell, with_run


def test_id_ranges_round_trip():
    ids = [9, 1, 2, 3, 7, 3, 10, 11, 20]
    assert format_ids(ids) == "1-3,7,9-11,20"
    assert parse_ids("1-3,7,9-11,20") == (1, 2, 3, 7, 9, 10, 11, 20)
    assert format_ids([]) == "" and parse_ids("") == () and parse_ids(None) == ()


@pytest.mark.parametrize("text, expected", [
    ("a,2,-5,3-1,4-x,,6", (2, 6)), ("../../etc", ()), ("5-5", (5,)), ("0", (0,)),
])
def test_malformed_ids_are_ignored(text, expected):
    assert parse_ids(text) == expected


def test_state_round_trip_and_defaults():
    state = ViewState(run="data-1a2b", cell=12, sel=(4, 5, 6, 9), view="concepts")
    search = format_search(state)
    assert search == "?run=data-1a2b&cell=12&sel=4-6,9&view=concepts"
    assert parse_search(search) == state
    assert parse_search(search.lstrip("?")) == state
    assert format_search(ViewState()) == ""
    assert parse_search("?cell=abc&view=evil") == ViewState()


def test_changing_run_or_cell_resets_what_depends_on_it():
    state = ViewState(run="a", cell=3, sel=(1, 2), view="concepts")
    assert with_run(state, "b") == ViewState(run="b", view="concepts")
    assert with_run(state, "a") is state
    assert with_cell(state, 4) == ViewState(run="a", cell=4, view="concepts")
    assert with_cell(state, 3) is state
