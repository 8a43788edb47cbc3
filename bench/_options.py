"""The ``--quick`` option every bench has: small settings for a smoke run (``make bench``).

``--quick`` only changes defaults: an option given on the command line still wins, so
``--quick --n 128`` is the quick run with 128 images. The quick values are listed in ``--help``.
"""
from __future__ import annotations

import argparse


def parse_args(parser: argparse.ArgumentParser, quick: dict, argv: list[str] | None = None,
               ) -> argparse.Namespace:
    """Add ``--quick`` to ``parser`` and parse ``argv``; with it, ``quick`` replaces the defaults.

    Parameters
    ----------
    parser : the bench's parser, with every option but ``--quick`` added.
    quick : destination name -> value used when ``--quick`` is given and the option is not.
    argv : the arguments (default: ``sys.argv[1:]``).
    """
    unknown = set(quick) - {a.dest for a in parser._actions}
    if unknown:
        raise ValueError(f"quick settings for options the parser does not have: {sorted(unknown)}")
    shown = ", ".join(_as_option(parser, dest, value) for dest, value in quick.items())
    parser.add_argument("--quick", action="store_true",
                        help=f"small settings for a smoke run (make bench): {shown or 'the defaults'}")
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**quick)
    return parser.parse_args(argv)


def _as_option(parser: argparse.ArgumentParser, dest: str, value) -> str:
    action = next(a for a in parser._actions if a.dest == dest)
    flag = max(action.option_strings, key=len)
    if value is True and action.nargs == 0:
        return flag
    return f"{flag} {value}"
