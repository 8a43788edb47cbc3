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
