"""The report's label sections: the learning curve a model would follow with more labels,
and the rows of the report's data whose labels look wrong."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.analysis.html_parts import cards_html, table_html

__all__ = ["label_issues_section", "learning_curve_section"]


def learning_curve_section(X: np.ndarray, y: np.ndarray, head: str) -> tuple[str, str]:
    """Out-of-fold accuracy against labels on the model's training rows, the power law
    fitted to it and read at 2× and 4× the labels there are."""
    from embedlab.analysis.plots import lines
    from embedlab.core.errors import ValidationError
    from embedlab.labeling.learning_curve import learning_curve, power_law

    title = "More labels? The learning curve"
    try:
        lc = learning_curve(X, y, head=head)
    except ValidationError as exc:
        return title, f'<p class="note">no learning curve: {exc}</p>'
    now = lc["labels_now"]
    top = 4.0 * now
    pts = lc["points"]
    curves = {
        "out-of-fold accuracy": (
            np.array([p["labels"] for p in pts]) / top,
            np.array([p["accuracy"] for p in pts]),
        )
    }
    cards: dict[str, Any] = {"labels now": now, "head": head}
    if lc["fit"] is not None:
        grid = np.linspace(pts[0]["labels"], top, 60)
        f = lc["fit"]
        curves["power law, extrapolated"] = (
            grid / top,
            power_law(grid, f["ceiling"], f["b"], f["c"]),
        )
        cards.update({f"accuracy at {k}": v for k, v in lc["at"].items()})
    svg = lines(
        curves, title="accuracy vs labels (out of fold, extrapolated)",
        xlabel=f"labels (1.0 = {int(top):,}, four times today's)", ylabel="accuracy",
    )  # fmt: skip
    return title, cards_html(cards) + f'<p class="note">{lc["note"]}</p>' + svg


def label_issues_section(X: np.ndarray, y: np.ndarray, oos: str, head: str) -> tuple[str, str]:
    """Rows of the report's data whose given labels look wrong (confident learning on
    out-of-fold probabilities; out-of-scope rows never flagged)."""
    from embedlab.core.errors import ValidationError
    from embedlab.labeling.label_issues import label_issues

    title = "Labels that look wrong"
    try:
        found = label_issues(X, y, oos_label=oos, head=head)
    except ValidationError as exc:
        return title, f'<p class="note">not checked: {exc}</p>'
    s = found.summary()
    note = "; ".join(s["notes"]) or "every row checked"
    rows = [
        [r["row"], r["given_label"], r["suggested_label"], r["p_given"], r["p_suggested"],
         r["neighbours_agree"]]
        for r in s["rows"]
    ]  # fmt: skip
    return title, (
        cards_html({"suspects": len(found), "rows checked": found.checked})
        + f'<p class="note">cleanlab on out-of-fold {head} probabilities; {note}. '
        "<code>embedlab diagnose SPACE --label-issues</code> writes them all.</p>"
        + table_html(
            ["row", "given", "suggested", "p(given)", "p(suggested)", "neighbours agree"], rows
        )
    )
