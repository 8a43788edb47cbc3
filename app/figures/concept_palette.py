"""Identity colours of a cell's concepts (the concept view and their images' outlines in the grid).

In the app blue means real and orange means fake (``--real`` / ``--fake`` in ``assets/style.css``,
the representation's wedges at every confidence), so a concept's colour must be neither: two
concepts drawn blue and orange read as "the real concept" and "the fake one" whatever their
segments say. The palette is taken from Paul Tol's colour-blind-safe schemes (muted, bright,
light) less their blues, oranges and browns, plus near-black. Measured with CIEDE2000 (test
``tests/unit/test_concept_view.py``): every colour is at least 21 from the real and the fake
colour and from every wedge shade, at least 18 from the grid's other marks (the green / red
frames, the yellow selection, the grey "no label"), and at least 24 from each other. A concept's
real/fake make-up is shown apart, as a bar in the real and fake colours.
"""
from __future__ import annotations

# (name, CSS colour) in concept order; the first three (the default ``concepts.k``) differ most
CONCEPT_COLOURS = (
    ("magenta", "#AA3377"),
    ("teal", "#44AA99"),
    ("olive", "#999933"),
    ("black", "#222222"),
    ("pink", "#EE99AA"),
    ("maroon", "#661100"),
)


def concept_colour(k: int) -> str:
    """CSS colour of concept ``k`` (0-based); repeats after the palette's six colours."""
    return CONCEPT_COLOURS[k % len(CONCEPT_COLOURS)][1]


def concept_colour_name(k: int) -> str:
    """The colour of concept ``k`` in words (the grid's note says which outlines are whose)."""
    return CONCEPT_COLOURS[k % len(CONCEPT_COLOURS)][0]
