"""``bench/_options.parse_args``: ``--quick`` replaces defaults, options given explicitly still win."""
from __future__ import annotations

import argparse

import pytest

from bench._options import parse_args


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--encoder", default="standin,clip")
    parser.add_argument("--skip-clip", action="store_true")
    return parser


QUICK = {"n": 64, "encoder": "standin", "skip_clip": True}


def test_without_quick_the_defaults_stay():
    args = parse_args(_parser(), QUICK, [])
    assert (args.n, args.encoder, args.skip_clip, args.quick) == (256, "standin,clip", False, False)


def test_quick_sets_its_values():
    args = parse_args(_parser(), QUICK, ["--quick"])
    assert (args.n, args.encoder, args.skip_clip, args.quick) == (64, "standin", True, True)


def test_an_option_given_explicitly_wins_over_quick():
    assert parse_args(_parser(), QUICK, ["--quick", "--n", "128"]).n == 128
    assert parse_args(_parser(), QUICK, ["--n", "128", "--quick"]).n == 128


def test_help_lists_the_quick_values(capsys):
    with pytest.raises(SystemExit):
        parse_args(_parser(), QUICK, ["--help"])
    assert "--n 64, --encoder standin, --skip-clip" in " ".join(capsys.readouterr().out.split())


def test_a_quick_value_for_a_missing_option_is_refused():
    with pytest.raises(ValueError, match="no_such"):
        parse_args(_parser(), {"no_such": 1}, [])


def test_every_bench_starts_both_ways_and_has_a_quick_run():
    """Each bench/*.py (helper modules, named ``_*.py``, excepted) puts the repository on sys.path
    when started as a script (``import _path`` under ``if not __package__``), runs ``main`` as a
    script, and takes ``--quick`` (``bench._options.parse_args``): ``make bench`` runs each one quick."""
    import ast

    from pipeline.config import REPO_ROOT

    makefile = (REPO_ROOT / "Makefile").read_text()
    benches = [p for p in sorted((REPO_ROOT / "bench").glob("*.py")) if not p.name.startswith("_")]
    assert len(benches) >= 10, [p.name for p in benches]
    for path in benches:
        text = path.read_text()
        tree = ast.parse(text)
        guard = [n for n in tree.body if isinstance(n, ast.If) and "__package__" in ast.unparse(n.test)]
        assert guard and "import _path" in ast.unparse(guard[0]), f"{path.name}: no _path bootstrap"
        assert "--quick" in text or "parse_args(ap" in text or "parse_args(parser" in text, \
            f"{path.name}: no --quick option"
        assert f"bench/{path.name}" in makefile, f"{path.name}: not in make bench"
