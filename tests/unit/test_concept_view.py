"""The concept view's words and colours (issue 23.5): every count names its unit (segments or
images, each by label), "small" is defined where it is used, and no concept colour can be read as
real or fake."""
import re
from pathlib import Path

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from app.figures.concept_palette import CONCEPT_COLOURS, concept_colour, concept_colour_name
from app.figures.glyph_map import SATURATIONS, class_colour
from app.figures.grid import SELECTION_STYLE
from app.files.artifacts import FRAME_RIGHT, FRAME_UNLABELLED, FRAME_WRONG
from app.views import concepts

STYLE_CSS = Path(__file__).resolve().parents[2] / "assets" / "style.css"

# a cell of 12 images: 0-3 real, 4-10 fake, 11 without a label (an applied set's image)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, -1], dtype=np.int8)
# 17 segments cut from 9 images (0-3 real, 4-8 fake): 12 of the segments from the real ones
CONCEPT = {"size": 17, "n_images": 9, "images": list(range(9)), "profile": [0.0] * 16,
           "patches": ["a.png", "b.png"], "segments_real": 12, "segments_fake": 5, "segments_unlabelled": 0}


def texts(component) -> str:
    """The strings of a Dash component tree, joined by spaces."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(filter(None, (texts(c) for c in component)))
    return texts(getattr(component, "children", None))


def find(component, cls: str) -> list:
    """Components with CSS class ``cls`` in a tree."""
    if isinstance(component, (list, tuple)):
        return [f for c in component for f in find(c, cls)]
    if not hasattr(component, "children"):
        return []
    here = [component] if cls in (getattr(component, "className", None) or "").split() else []
    return here + find(component.children, cls)


def test_a_concept_counts_segments_and_images_apart_each_by_label():
    block = concepts.concept_block("run", 3, 0, CONCEPT, total=70, labels=LABELS)
    words = texts(block)
    assert words.startswith("Concept 1  · 17 segments from 9 images (4 real, 5 fake images) · 24% of the cell's "
                            "70 segments")  # (two spaces: the title and the counts are two elements)
    assert "12 segments from real images (71%), 5 from fake images (29%)" in words
    assert "small" not in words  # 17 of 70 segments: 24%
    assert "Show its 9 images in the grid" in words
    bar = find(block, "fx-share-bar")[0]  # the bar says the same, in the real and fake colours
    assert bar.title == "12 segments from real images (71%), 5 from fake images (29%)"
    assert [(s.className, s.style["width"]) for s in bar.children] == [("real", "71%"), ("fake", "29%"),
                                                                        ("unlabelled", "0%")]


def test_counts_of_one_image_one_segment_and_of_images_without_a_label():
    one = {**CONCEPT, "size": 1, "images": [5], "segments_real": 0, "segments_fake": 1}
    assert "1 segment from 1 image (0 real, 1 fake image) · 10% of the cell's 10 segments" in texts(
        concepts.concept_block("run", 3, 1, one, total=10, labels=LABELS))
    assert concepts.segments_words(one) == "0 segments from real images (0%), 1 from fake images (100%)"
    mixed = {**CONCEPT, "size": 6, "images": [0, 4, 11], "segments_real": 2, "segments_fake": 1,
             "segments_unlabelled": 3}
    assert "6 segments from 3 images (1 real, 1 fake images; 1 without a label)" in texts(
        concepts.concept_block("run", 3, 1, mixed, total=30, labels=LABELS))
    assert concepts.segments_words(mixed) == ("2 segments from real images (33%), 1 from fake images (17%), "
                                              "3 from images without a label (50%)")
    blind = {**CONCEPT, "size": 5, "images": [11], "segments_real": 0, "segments_fake": 0, "segments_unlabelled": 5}
    assert concepts.images_words(1, concepts.image_counts(blind, LABELS)) == "1 image (1 without a label)"
    assert concepts.segments_words(blind) == "5 segments, all from images without a label"
    # an older concepts file without the image list: the image count, not split by label
    old = {k: v for k, v in CONCEPT.items() if k != "images"}
    assert "17 segments from 9 images · 24% of the cell's 70 segments" in texts(
        concepts.concept_block("run", 3, 0, old, total=70, labels=LABELS))


@pytest.mark.parametrize("total, fewest", [(5, 2), (20, 2), (25, 3), (30, 3), (40, 4), (70, 7)])
def test_small_means_under_a_tenth_of_the_cells_segments_or_a_single_segment(total, fewest):
    assert concepts.small_below(total) == fewest  # 30: not 4 (0.1 * 30 = 3.0000000000000004)
    small = concepts.concept_block("run", 3, 2, {**CONCEPT, "size": fewest - 1}, total=total, labels=LABELS)
    big = concepts.concept_block("run", 3, 2, {**CONCEPT, "size": fewest}, total=total, labels=LABELS)
    assert small.className == "fx-concept small" and big.className == "fx-concept"
    assert texts(find(small, "fx-concept-small")) == (
        f"small concept: fewer than {fewest} segments (under 10% of the cell's {total} segments, or a "
        f"single segment), so one image's detail rather than a pattern of the cell")
    assert find(big, "fx-concept-small") == []


def test_a_concept_is_drawn_in_its_own_colour_everywhere():
    block = concepts.concept_block("run", 3, 1, CONCEPT, total=70, labels=LABELS)
    swatch = find(block, "fx-concept-swatch")[0]
    assert swatch.style["background"] == concept_colour(1) == "#44AA99"
    profile = next(c for c in block.children if getattr(c, "figure", None) is not None).figure
    assert profile.data[0].marker.color == concept_colour(1)
    assert concept_colour_name(1) in swatch.title and "not real or fake" in swatch.title
    assert concept_colour(len(CONCEPT_COLOURS)) == concept_colour(0)  # the palette repeats


def css_colour(name: str) -> tuple[int, int, int]:
    """``--name: rgb(r, g, b)`` of the app's stylesheet."""
    found = re.search(rf"--{name}:\s*rgb\((\d+),\s*(\d+),\s*(\d+)\)", STYLE_CSS.read_text())
    return tuple(int(v) for v in found.groups())


def parse(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` or ``rgb(r,g,b)`` -> (r, g, b)."""
    if colour.startswith("#"):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(v) for v in re.findall(r"\d+", colour)[:3])


def delta_e(a, b) -> float:
    """CIEDE2000 colour difference of two sRGB colours (about 2: just noticeable)."""
    lab = [rgb2lab(np.array([[c]], dtype=float) / 255)[0, 0] for c in (a, b)]
    return float(deltaE_ciede2000(*lab))


def test_no_concept_colour_reads_as_real_or_fake_or_as_another_mark():
    real_fake = {"real (--real)": css_colour("real"), "fake (--fake)": css_colour("fake")}
    assert real_fake == {"real (--real)": (31, 119, 180), "fake (--fake)": (255, 127, 14)}
    for cls in ("real", "fake"):  # the representation's wedges at every confidence
        real_fake.update({f"{cls} wedge {b}": parse(class_colour(cls, b)) for b in range(len(SATURATIONS))})
    marks = {"right frame": FRAME_RIGHT, "wrong frame": FRAME_WRONG, "no-label grey": FRAME_UNLABELLED,
             "selection": parse(SELECTION_STYLE["color"])}
    for name, colour in CONCEPT_COLOURS:
        c = parse(colour)
        nearest = min(real_fake, key=lambda k: delta_e(c, real_fake[k]))
        assert delta_e(c, real_fake[nearest]) >= 20, f"{name} {colour} is close to {nearest}"
        nearest = min(marks, key=lambda k: delta_e(c, marks[k]))
        assert delta_e(c, marks[nearest]) >= 15, f"{name} {colour} is close to the grid's {nearest}"
    pairs = [(a, b) for i, a in enumerate(CONCEPT_COLOURS) for b in CONCEPT_COLOURS[i + 1:]]
    closest = min(pairs, key=lambda p: delta_e(parse(p[0][1]), parse(p[1][1])))
    assert delta_e(parse(closest[0][1]), parse(closest[1][1])) >= 20, f"{closest} are hard to tell apart"
    assert len({name for name, _ in CONCEPT_COLOURS}) == len(CONCEPT_COLOURS)


def test_the_colour_test_would_catch_the_old_blue_and_orange():
    # the reported fault: concepts drawn rgb(76,114,176) and rgb(221,132,82)
    assert delta_e((76, 114, 176), css_colour("real")) < 20
    assert delta_e((221, 132, 82), css_colour("fake")) < 20
