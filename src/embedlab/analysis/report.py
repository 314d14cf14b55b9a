"""One self-contained HTML report (inline CSS and SVG, no scripts, no network) of a model
on labelled data, or of an embedding space on its own.

Sections: headline metrics; confusion hot spots and per-class accuracy; in-scope vs
out-of-scope score histograms with the threshold, and the ROC curve; diagnostics
(:mod:`embedlab.analysis.diagnose`); a 2-D map of the embeddings (PCA) coloured by class with
out-of-scope points and hover text; the planner's layer × dim heat map when a plan is given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.analysis import plots
from embedlab.analysis.html_parts import cards_html as _cards
from embedlab.analysis.html_parts import table_html as _table
from embedlab.core.errors import ValidationError
from embedlab.core.vectors import principal_directions

__all__ = ["discovery_report", "discovery_section", "model_report", "space_report", "write_report"]

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1080px;color:#222}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;
margin-top:32px}.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;
border-radius:6px;padding:8px 12px;min-width:120px}.card b{display:block;font-size:20px}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #eee;
padding:3px 10px;text-align:left}td.n{text-align:right}.note{color:#666;font-size:12px}
svg.plot{display:block;margin:8px 0;max-width:100%;height:auto}svg .t{font-size:14px;
font-weight:600}svg .l{font-size:12px;fill:#444}svg .k{font-size:10px;fill:#333}
.grid{display:flex;flex-wrap:wrap;gap:12px}
"""


def _page(title: str, sections: list[tuple[str, str]], footer: str) -> str:
    body = "".join(f"<section><h2>{escape(h)}</h2>{c}</section>" for h, c in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1>{body}<p class="note">{escape(footer)}</p></body></html>'
    )


def _map(
    X: np.ndarray,
    groups: np.ndarray,
    hover: list[str],
    *,
    max_points: int,
    seed: int,
    highlight: str | None,
) -> str:
    """PCA map of (a seeded sample of) the rows."""
    rows = np.arange(len(X))
    if len(X) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(X), max_points, replace=False))
    Z = X[rows].astype(np.float64)
    Z -= Z.mean(0)
    _, vecs = principal_directions(Z)
    xy = Z @ vecs[:, :2]
    note = (
        f'<p class="note">PCA of {len(rows):,} of {len(X):,} rows (a seeded random sample)'
        f"; hover a point for its text and labels.</p>"
        if len(rows) < len(X)
        else f'<p class="note">PCA of all {len(X):,} rows; hover a point for its text.</p>'
    )
    svg = plots.scatter(
        xy,
        [str(g) for g in groups[rows]],
        [hover[i] for i in rows],
        title="Embeddings, coloured by label" + (f" (× = {highlight})" if highlight else ""),
        highlight=highlight,
    )
    return svg + note


def _diagnostics(X: np.ndarray, y: np.ndarray | None, seed: int) -> str:
    from embedlab.analysis.diagnose import MEASURE_NOTES, diagnose

    rep = diagnose(X, y, seed=seed)
    title = {k: t for k, (t, _) in MEASURE_NOTES.items()}
    note = {k: n for k, (_, n) in MEASURE_NOTES.items()}
    rows = [
        (title["rankme"], rep["rankme"], f"of {rep['dim']} dimensions"),
        (title["uniformity"], rep["uniformity"]["value"], note["uniformity"]),
        ("isotropy (partition ratio)", rep["isotropy"]["partition_ratio"], "1 = isotropic"),
        ("mean cosine of random pairs", rep["isotropy"]["mean_cosine"], "0 = centred"),
    ]
    if "fisher_ratio" in rep:
        rows += [
            (title["alignment"], rep["alignment"]["value"], note["alignment"]),
            (title["fisher_ratio"], rep["fisher_ratio"], note["fisher_ratio"]),
            (
                title["silhouette"],
                rep["silhouette"]["value"],
                f"on {rep['silhouette']['sampled']:,} of {rep['silhouette']['of']:,} rows",
            ),
            (title["nc1"], rep["nc1"], note["nc1"]),
        ]
    html = _table(["measure", "value", "note"], rows)
    if "confusable_pairs" in rep:
        html += "<h3>Closest class means</h3>" + _table(
            ["class", "class", "cosine"],
            [(p["a"], p["b"], p["cosine"]) for p in rep["confusable_pairs"]],
        )
    if "label_errors" in rep:
        le = rep["label_errors"]
        html += (
            f"<h3>Likely label errors ({len(le['rows'])} among {le['checked']:,} rows checked"
            f" of {le['of']:,})</h3>"
        )
        html += _table(
            ["row", "label", "neighbours say", "disagreement"],
            [
                (r["row"], r["label"], r["neighbours_say"], r["disagreement"])
                for r in le["rows"][:25]
            ],
        )
    nd = rep["near_duplicates"]
    html += (
        f"<h3>Near-duplicates (cosine ≥ {nd['threshold']}): {len(nd['pairs'])} pairs among "
        f"{nd['checked']:,} rows checked</h3>"
    )
    html += _table(
        ["row", "row", "cosine"], [(p["a"], p["b"], p["cosine"]) for p in nd["pairs"][:25]]
    )
    return html


def _plan_heatmap(plan_path: str | Path) -> str:
    path = Path(plan_path)
    path = path / "plan.json" if path.is_dir() else path
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        metric, rows = doc["metric"], doc["rows"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ValidationError(f"cannot read a plan from {path}: {exc}") from None
    float_rows = [r for r in rows if r["storage"] == "float32"]
    layers = sorted({r["layer"] for r in float_rows})
    dims = sorted({r["dim"] for r in float_rows}, reverse=True)
    grid = np.full((len(layers), len(dims)), np.nan)
    for r in float_rows:
        grid[layers.index(r["layer"]), dims.index(r["dim"])] = r[metric]
    rec = doc.get("recommended") or {}
    return plots.heatmap(
        grid,
        [f"layer {k}" for k in layers],
        [str(d) for d in dims],
        title=f"Planner: {metric} per layer × dimension (float32)",
        xlabel="dimensions",
        ylabel="layer",
    ) + (
        f'<p class="note">Recommended by the planner: {escape(str(rec.get("name")))} '
        f"({escape(metric)} {rec.get('quality', float('nan')):.4f}).</p>"
        if rec
        else ""
    )


def model_report(
    pipeline: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    title: str = "embedlab report",
    plan: str | Path | None = None,
    max_points: int = 3000,
    seed: int = 0,
    alignment: Any = None,
    against: Sequence[str] | None = None,
) -> str:
    """HTML report of a fitted :class:`~embedlab.models.pipeline.Pipeline` on labelled texts;
    with ``alignment`` (an :class:`~embedlab.align.Alignment`), where that map is weak; for
    a model with concepts, each class's concept profile and — with ``against`` (reference
    texts, e.g. the training data) — the concepts that rose or fell in these texts."""
    from embedlab.core.metrics import evaluate_open_set
    from embedlab.core.validation import check_labels

    if getattr(pipeline, "multi_label", False):
        return _multi_label_report(pipeline, texts, labels, title=title)
    start = time.perf_counter()
    y = check_labels(labels, len(texts)).astype(str)
    oos = pipeline.oos_label
    X = pipeline.embed(texts)
    d = pipeline.classifier_.predict_details(X, top_k=1)
    metrics = evaluate_open_set(y, d.labels, d.novelty, oos, d.top_labels[:, 0].astype(str))
    is_oos = y == oos
    sections = [("Headline metrics", _headline(metrics))]
    tree = getattr(pipeline, "hierarchy", None)
    if tree is not None:
        sections.append(_levels_section(y, d.labels, tree, oos))
    sections.append(_errors_section(y, d, is_oos))
    if is_oos.any() and (~is_oos).any():
        sections.append(
            _detection_section(d.novelty, is_oos, float(pipeline.classifier_.threshold_), metrics)
        )
    sections.append(_guarantees_section(pipeline.classifier_, X, y, is_oos))
    sections.append(
        ("Diagnostics of the in-scope embeddings", _diagnostics(X[~is_oos], y[~is_oos], seed))
    )
    hover = [
        f"{t[:160]} — label {a}, predicted {b}" for t, a, b in zip(texts, y, d.labels, strict=True)
    ]
    sections.append(("Map", _map(X, y, hover, max_points=max_points, seed=seed, highlight=oos)))
    sections += labels_sections(pipeline, X, y)
    if plan is not None:
        sections.append(("Layer × dimension quality", _plan_heatmap(plan)))
    if alignment is not None:
        sections.append(map_section(alignment, pipeline.info))
    concepts = getattr(pipeline, "concepts_", None)
    if concepts is not None:
        from embedlab.analysis.concept_report import concept_drift_section, concepts_section

        sections.append(concepts_section(concepts, X, y, oos))
        if against is not None:
            sections.append(concept_drift_section(concepts, X, pipeline.embed(against)))
    elif against is not None:
        sections.append(
            ("Concept drift", '<p class="note">this model has no concepts: add them with '
             "<code>embedlab concepts MODEL --in-place</code> to see which rose or fell.</p>")
        )  # fmt: skip
    info = pipeline.info or {}
    footer = (
        f"head {info.get('head')}, detector {info.get('detector')}, "
        f"{len(texts):,} rows; built in {time.perf_counter() - start:.1f} s by embedlab."
    )
    return _page(title, sections, footer)


def labels_sections(pipeline: Any, X: np.ndarray, y: np.ndarray) -> list[tuple[str, str]]:
    """The learning curve (the model's kept training rows, else these) and label issues."""
    from embedlab.analysis.labels_report import label_issues_section, learning_curve_section

    head = "linear" if (pipeline.info or {}).get("head") != "prototype" else "prototype"
    kept = getattr(pipeline.classifier_, "train_X_", None)
    Xc, yc = (X[y != pipeline.oos_label], y[y != pipeline.oos_label]) if kept is None else \
        pipeline.classifier_.reference_rows()  # fmt: skip
    return [
        learning_curve_section(Xc, yc, head),
        label_issues_section(X, y, pipeline.oos_label, head),
    ]


def _headline(metrics: dict[str, Any]) -> str:
    """Accuracy with and without rejection side by side, first: on closed-set data the
    second is the figure to compare with other classifiers."""
    first = {
        "accuracy (rejection = error)": metrics["accuracy"],
        "head accuracy (no rejection)": metrics["head_accuracy"],
    }
    rest = {k: v for k, v in metrics.items() if k not in ("accuracy", "head_accuracy")}
    headline = _cards(first | rest)
    if not metrics["n_oos"] and metrics["in_scope_rejected"] is not None:
        headline += (
            '<p class="note">These rows hold no out-of-scope examples: head accuracy is the '
            "figure comparable with closed-set classifiers; the threshold rejected "
            f"{metrics['in_scope_rejected']:.2%} of them (<code>embedlab predict --no-reject"
            "</code> turns rejection off without refitting).</p>"
        )
    return headline


def _levels_section(y: np.ndarray, predicted: np.ndarray, tree: Any, oos: str) -> tuple[str, str]:
    from embedlab.models.hierarchy import evaluate_levels

    lv = evaluate_levels(y, predicted, tree, oos_label=oos)
    share = lv["wrong_leaf_right_parent_share"]
    return (
        "Accuracy at every level of the hierarchy",
        _cards({f"accuracy, {k}": v for k, v in lv["accuracy_by_level"].items()})
        + f'<p class="note">Coarser levels are the predicted label mapped up. Of '
        f"{lv['wrong_leaf']} wrong labels, {lv['wrong_leaf_right_parent']} have the "
        "right parent" + (f" ({share:.0%})" if share is not None else "") + ".</p>",
    )


def _errors_section(y: np.ndarray, d: Any, is_oos: np.ndarray) -> tuple[str, str]:
    """Where the classifier goes wrong: confusion hot spots and the lowest per-class
    accuracies (in-scope rows)."""
    top1 = d.top_labels[:, 0].astype(str)
    inside = ~is_oos
    wrong = inside & (top1 != y)
    pairs, counts = (
        np.unique(np.stack([y[wrong], top1[wrong]], 1), axis=0, return_counts=True)
        if wrong.any()
        else (np.empty((0, 2)), np.empty(0, int))
    )
    order = np.argsort(-counts, kind="stable")[:20]
    classes, inv = np.unique(y[inside], return_inverse=True)
    correct = (d.labels[inside] == y[inside]).astype(float)
    acc = np.bincount(inv, weights=correct) / np.bincount(inv)
    worst = np.argsort(acc, kind="stable")[:30]
    return (
        "Where the classifier goes wrong",
        '<div class="grid"><div>'
        + "<h3>Confusion hot spots (true → predicted, in-scope rows)</h3>"
        + _table(
            ["true", "predicted", "rows"],
            [(pairs[i][0], pairs[i][1], int(counts[i])) for i in order],
        )
        + "</div><div>"
        + plots.bars(
            [classes[i] for i in worst],
            [acc[i] for i in worst],
            title=f"Per-class accuracy, the {len(worst)} lowest of {len(classes)}",
            xlabel="accuracy (rejections count as errors)",
        )
        + "</div></div>",
    )


def _guarantees_section(
    classifier: Any, X: np.ndarray, y: np.ndarray, is_oos: np.ndarray
) -> tuple[str, str]:
    """The model's promises checked on these rows (see :mod:`embedlab.analysis.guarantees`)."""
    from embedlab.analysis.guarantees import batch_guarantees

    g = batch_guarantees(classifier, X, y, is_oos)
    return (
        "Guarantees",
        _cards(g)
        + '<p class="note">Split-conformal calibration: an in-scope input is rejected with '
        "probability at most the target, at any number of calibration rows (a rate below "
        "1/(n+1) cannot be promised, and then nothing is rejected). Prediction sets hold the "
        "true label with the chosen probability. The drift martingale bets against these "
        "rows being exchangeable with the calibration rows (in their order here); it "
        "reaches 100 (log10 2) on exchangeable rows with probability at most 1 % — labelled "
        "out-of-scope rows in the batch make it grow by design.</p>",
    )


def _detection_section(
    novelty: np.ndarray, is_oos: np.ndarray, threshold: float, metrics: dict[str, Any]
) -> tuple[str, str]:
    """Out-of-scope detection: novelty histograms with the threshold, and the ROC curve."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(is_oos.astype(int), novelty)
    return (
        "Out-of-scope detection",
        '<div class="grid">'
        + plots.histograms(
            {"in-scope": novelty[~is_oos], "out-of-scope": novelty[is_oos]},
            title="Novelty scores",
            xlabel="novelty (higher = more unusual)",
            threshold=threshold,
        )
        + plots.lines(
            {f"ROC (AUROC {metrics['oos_auroc']:.4f})": (fpr, tpr)},
            title="ROC: out-of-scope vs in-scope",
            xlabel="false positive rate",
            ylabel="true positive rate",
            diagonal=True,
        )
        + "</div>",
    )


def _multi_label_report(
    pipeline: Any, texts: Sequence[str], labels: Sequence[Any], *, title: str
) -> str:
    """Report of a multi-label pipeline: headline metrics, per-label F1 with its threshold."""
    start = time.perf_counter()
    metrics = pipeline.evaluate(texts, labels)
    per = metrics.pop("per_label")
    metrics.pop("seconds", None)
    headline = _cards({k: v for k, v in metrics.items() if v is not None})
    headline += (
        '<p class="note">micro-F1 pools every (row, label) decision; macro-F1 averages the '
        "labels' F1, so rare labels weigh as much as common ones; subset accuracy counts a "
        "row right only when its whole label set is; a row with no predicted label is the "
        "model's out-of-scope answer.</p>"
    )
    order = sorted(per, key=lambda k: (per[k]["f1"], k))
    rows = [
        [
            k,
            per[k]["precision"],
            per[k]["recall"],
            per[k]["f1"],
            per[k]["support"],
            "never" if per[k]["threshold"] is None else float(per[k]["threshold"]),
        ]
        for k in order
    ]
    chart = plots.bars(
        order[::-1], [per[k]["f1"] for k in order[::-1]], title="F1 per label", xlabel="F1"
    )
    info = pipeline.info or {}
    calibration = (
        f"Thresholds: {info.get('calibrated_on', 'held-out rows')}, each label's "
        + (
            f"lowest with precision ≥ {info['target_precision']:g}"
            if info.get("target_precision")
            else "F1-maximising one"
        )
        + "; predict a label when its score is at least its threshold."
    )
    sections = [
        ("Headline metrics", headline),
        (
            "Per label",
            chart
            + f'<p class="note">{escape(calibration)}</p>'
            + _table(["label", "precision", "recall", "F1", "support", "threshold"], rows),
        ),
    ]
    footer = (
        f"head {info.get('head')}, {len(per)} labels, {len(texts):,} rows; built in "
        f"{time.perf_counter() - start:.1f} s by embedlab."
    )
    return _page(title, sections, footer)


def map_section(alignment: Any, info: dict[str, Any] | None = None) -> tuple[str, str]:
    """Where an encoder map is weak: its held-out fidelity each way, the other methods
    tried, and the classes whose neighbourhoods it moves most (their labels are the ones to
    re-check after a migration)."""
    a = alignment.info
    fid = a.get("fidelity", {})
    cards = {
        "method": alignment.method,
        "calibration texts": a.get("calibration_texts"),
        "held-out cosine (old → new)": fid.get("forward", {}).get("mean_cosine"),
        "neighbour overlap@10": fid.get("forward", {}).get("neighbour_overlap@10"),
        "held-out cosine (new → old)": fid.get("backward", {}).get("mean_cosine"),
    }
    html = _cards(cards)
    migrated = (info or {}).get("migrated")
    if migrated:
        html += (
            f"<p>This model was migrated through a {escape(str(migrated.get('method')))} map "
            f"({migrated.get('calibration_texts')} calibration texts).</p>"
        )
    tried = a.get("methods_tried") or {}
    if tried:
        html += _table(
            ["method", "mean cosine", "p05 cosine", "overlap@10", "match@1"],
            [
                [m, v["mean_cosine"], v["p05_cosine"], v["neighbour_overlap@10"], v["match@1"]]
                for m, v in tried.items()
            ],
        )
    per = a.get("per_class")
    if per:
        html += "<p>Classes the map moves most (lowest neighbour overlap):</p>" + _table(
            ["class", "calibration rows", "overlap@10", "mean cosine"],
            [
                [
                    c,
                    per["classes"][c]["rows"],
                    per["classes"][c]["neighbour_overlap@10"],
                    per["classes"][c]["mean_cosine"],
                ]
                for c in per["weakest"]
            ],
        )
    else:
        html += "<p>The map was fitted without labels: no per-class view (align --label-col).</p>"
    return "Encoder map", html


def space_report(
    space: Any,
    *,
    title: str = "embedlab report",
    plan: str | Path | None = None,
    oos_label: str = "oos",
    max_points: int = 3000,
    seed: int = 0,
    alignment: Any = None,
) -> str:
    """HTML report of an :class:`~embedlab.data.embedding_set.EmbeddingSet` (labels,
    texts optional); with ``alignment``, where that encoder map is weak."""
    start = time.perf_counter()
    X = np.asarray(space.vectors, dtype=np.float32)
    y = None if space.labels is None else space.labels.astype(str)
    sections = [
        (
            "Overview",
            _cards(
                {
                    "rows": space.n,
                    "dimensions": space.dim,
                    "labels": len(space.classes) if y is not None else "none",
                    "encoder": (space.provenance.encoder or {}).get("name", "unknown"),
                }
            ),
        )
    ]
    if y is not None:
        counts = space.label_counts()
        sections[0] = (
            sections[0][0],
            sections[0][1] + _table(["label", "rows"], list(counts.items())[:40]),
        )
    inside = np.ones(len(X), bool) if y is None else y != oos_label
    sections.append(
        ("Diagnostics", _diagnostics(X[inside], None if y is None else y[inside], seed))
    )
    texts = space.texts if space.texts is not None else space.ids
    groups = y if y is not None else np.full(len(X), "rows")
    hover = [f"{str(t)[:160]} — {g}" for t, g in zip(texts, groups, strict=True)]
    highlight = oos_label if y is not None and (y == oos_label).any() else None
    sections.append(
        ("Map", _map(X, groups, hover, max_points=max_points, seed=seed, highlight=highlight))
    )
    if plan is not None:
        sections.append(("Layer × dimension quality", _plan_heatmap(plan)))
    if alignment is not None:
        sections.append(map_section(alignment))
    return _page(title, sections, f"built in {time.perf_counter() - start:.1f} s by embedlab.")


def discovery_section(
    summary: dict[str, Any],
    X: np.ndarray,
    names: Sequence[str],
    texts: Sequence[str],
    *,
    max_points: int = 3000,
    seed: int = 0,
) -> str:
    """The "Discovered classes" section: counts, one row per cluster (size, distinctive
    words, most central texts) and a map of the rows coloured by cluster (noise = ×)."""
    cards = _cards(
        {
            "rows read": summary["n_rows"],
            "rows clustered": summary["n_selected"],
            "clusters (k estimated)": summary["k_estimated"],
            "noise rows": summary["n_noise"],
        }
    )
    rows = [
        (c["id"], c["name"], c["size"], ", ".join(c["words"]), " · ".join(c["central_texts"]))
        for c in summary["clusters"]
    ]
    table = _table(["id", "suggested name", "rows", "distinctive words", "most central"], rows)
    note = (
        f'<p class="note">{escape(summary["selection"])}; clusters under '
        f"{summary['min_size']} rows are noise. Review clusters.csv (rename a cluster in its "
        "label column, or delete its rows), then <code>embedlab add-classes MODEL "
        "clusters.csv -o NEW_MODEL</code>.</p>"
    )
    noise = str(summary.get("noise_label", "noise"))
    hover = [f"{str(t)[:160]} — {g}" for t, g in zip(texts, names, strict=True)]
    groups = np.asarray([str(g) for g in names], dtype=object)
    plot = (
        _map(X, groups, hover, max_points=max_points, seed=seed, highlight=noise)
        if len(X) >= 3
        else ""
    )
    return cards + note + table + plot


def discovery_report(
    summary: dict[str, Any],
    X: np.ndarray,
    names: Sequence[str],
    texts: Sequence[str],
    *,
    title: str = "embedlab discover",
) -> str:
    """A page holding :func:`discovery_section`."""
    start = time.perf_counter()
    section = discovery_section(summary, X, names, texts)
    return _page(
        title,
        [("Discovered classes", section)],
        f"built in {time.perf_counter() - start:.1f} s by embedlab.",
    )


def write_report(html: str, path: str | Path) -> Path:
    """Write the report atomically."""
    from embedlab.store.atomic import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValidationError(f"the report is HTML: name it *.html, not {path.name}")
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
