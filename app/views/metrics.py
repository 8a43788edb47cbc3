"""The run's detection figures as the analyst needs them to judge the detector before explaining it.

A summary line (held-out accuracy, AP, AUC and what they were measured on), the class balance of
the data, the head's AUC beside the reference linear probe's on the full embedding (fidelity:
does the explained head detect as well as its embedding allows), the training figures next to the held-out ones (a large gap means the head learned its
training images rather than a pattern), and per generator: how many real and fake held-out
images, the accuracy on each class, AP and AUC. Each figure carries its 95% bootstrap interval
where the run recorded one (runs made before the intervals have none). Pure functions of ``meta.json``'s ``metrics`` and
``data`` (``pipeline.model.metrics`` computes them); the shell's status callback shows them.
"""
from __future__ import annotations

from dash import html

from pipeline.model.probe import fidelity_words

IMBALANCE = 2.0  # one class this many times the other: accuracy alone misleads
OVERFIT_GAP = 0.10  # train accuracy this much above held-out: say so


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)  # None or NaN


def pct(v) -> str:
    return "–" if _missing(v) else f"{v:.1%}"


def num(v) -> str:
    return "–" if _missing(v) else f"{v:.3f}"


def interval(m: dict, key: str, fmt=num):
    """The 95% interval of ``m[key]`` as a small muted span, or nothing (older runs have none)."""
    ci = (m.get("ci95") or {}).get(key)
    if not ci:
        return []
    return [html.Span(f" [{fmt(ci[0])}, {fmt(ci[1])}]", className="fx-ci",
                      title="95% bootstrap interval (held-out images resampled 1,000 times)")]


def balance_words(n_real: int, n_fake: int) -> str | None:
    """A warning when one class outnumbers the other by :data:`IMBALANCE` or more."""
    if not n_real or not n_fake:
        return None
    big, small = max(n_real, n_fake), min(n_real, n_fake)
    if big / small < IMBALANCE:
        return None
    major = "real" if n_real > n_fake else "fake"
    return (f"imbalanced: {big / (n_real + n_fake):.0%} of the images are {major}; read the accuracy "
            f"per class and AUC/AP, not the overall accuracy")


def gap_words(train: dict, held: dict) -> str | None:
    """A warning when the head does much better on its training images than on held-out ones."""
    a, b = train.get("accuracy"), held.get("accuracy")
    if _missing(a) or _missing(b) or a - b < OVERFIT_GAP:
        return None
    return (f"the head is {a - b:.0%} more accurate on its training images than on held-out ones: "
            f"part of what it learned does not carry over")


def generator_table(per_generator: dict) -> html.Table:
    head = ["generator", "n real", "n fake", "real acc.", "fake acc.", "accuracy", "AP", "AUC"]
    rows = [html.Tr([html.Td(g), html.Td(m.get("n_real", "")), html.Td(m.get("n_fake", "")),
                     html.Td(pct(m.get("real_accuracy"))), html.Td(pct(m.get("fake_accuracy"))),
                     html.Td([pct(m.get("accuracy")), *interval(m, "accuracy", pct)]),
                     html.Td([num(m.get("ap")), *interval(m, "ap")]),
                     html.Td([num(m.get("auc")), *interval(m, "auc")])])
            for g, m in sorted(per_generator.items())]
    return html.Table(className="fx-metrics-table", children=[
        html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)])


def metrics_block(metrics: dict, data: dict | None = None) -> list:
    """The metrics panel's children (empty when the run records no head metrics)."""
    head = metrics.get("head") or {}
    if not head:
        return []
    data = data or {}
    train = head.get("train") or {}
    out = [html.Span(["held-out accuracy ", html.B(pct(head.get("accuracy"))), *interval(head, "accuracy", pct)],
                     className="fx-metric"),
           html.Span(["AP ", html.B(num(head.get("ap"))), *interval(head, "ap")], className="fx-metric"),
           html.Span(["AUC ", html.B(num(head.get("auc"))), *interval(head, "auc")], className="fx-metric"),
           html.Span(f"on {head.get('n', '?')} held-out images ({head.get('n_real', '?')} real, "
                     f"{head.get('n_fake', '?')} fake; real acc. {pct(head.get('real_accuracy'))}, "
                     f"fake acc. {pct(head.get('fake_accuracy'))})", className="fx-muted")]
    fidelity = fidelity_words(head)
    if fidelity:
        out.append(html.Span(f"fidelity: {fidelity[0]}", className="fx-warning" if fidelity[1] else "fx-muted",
                             title="reference: standardised logistic regression (C = 0.01) on the encoder's "
                                   "embedding, same train / held-out split"))
    if train:
        out.append(html.Span(f"train: accuracy {pct(train.get('accuracy'))}, AUC {num(train.get('auc'))} "
                             f"on {train.get('n', '?')} images", className="fx-muted"))
    if data.get("n_real") is not None:
        out.append(html.Span(f"data: {data['n_real']} real / {data.get('n_fake')} fake",
                             className="fx-muted"))
    for warning in (balance_words(int(data.get("n_real") or 0), int(data.get("n_fake") or 0)),
                    gap_words(train, head)):
        if warning:
            out.append(html.Span(warning, className="fx-warning"))
    per_gen = head.get("per_generator") or {}
    if per_gen:
        out.append(html.Details(className="fx-metrics-details", open=len(per_gen) <= 4, children=[
            html.Summary(f"per generator (held-out, {len(per_gen)})"), generator_table(per_gen)]))
    return out
