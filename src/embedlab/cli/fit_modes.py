"""The label structures `embedlab fit` builds besides single-label classifiers —
zero-shot from label names (``--labels-only``) and multi-label (``--multi-label``) — and
the summaries fit prints."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from embedlab.cli.common import console, err_console, read_input_texts
from embedlab.models.fit_options import FitConfig, parse_target_fpr


def without_label_issues(table: Any, encoder: Any, oos_label: str, multi_label: bool) -> Any:
    """`fit --drop-label-issues`: the training table less the rows whose labels look wrong
    (:func:`~embedlab.labeling.label_issues.label_issues` on the encoder's vectors; the
    training texts are encoded once more here). Never a default; says what it dropped."""
    import dataclasses

    import numpy as np

    from embedlab.core.errors import ValidationError
    from embedlab.labeling.label_issues import label_issues

    if multi_label:
        raise ValidationError("--drop-label-issues is for single-label data (one label per row)")
    X = encoder.encode(table.texts, progress=None)
    found = label_issues(X, table.labels, oos_label=oos_label)
    keep = np.setdiff1d(np.arange(len(table.texts)), found.rows)
    shown = ", ".join(
        f"row {r + 1} {table.labels[r]!r}→{s!r}"
        for r, s in zip(found.rows[:3], found.suggested[:3], strict=False)
    )
    err_console.print(
        f"dropped {len(found)} of {len(table.texts)} rows whose labels look wrong"
        + (f" (e.g. {shown})" if shown else "")
        + "; `embedlab diagnose SPACE --label-issues` lists them all"
    )
    pick = lambda v: None if v is None else [v[i] for i in keep]  # noqa: E731
    return dataclasses.replace(
        table, texts=pick(table.texts), labels=pick(table.labels), ids=pick(table.ids),
        metadata=None, table=None,
    )  # fmt: skip


def fit_labels_only(opts: dict, pipe: Any) -> None:
    """`fit --labels-only`: a zero-shot model from label names / descriptions."""
    o = SimpleNamespace(**opts)
    from embedlab.data.readers import read_label_names

    labels, descriptions = read_label_names(o.labels_only, delimiter=o.delimiter)
    in_scope = None
    if o.val is not None:
        vt = read_input_texts(
            o.val,
            text_col=o.text_col,
            label_col=None,
            splits=o.val_split,
            skip_empty=o.skip_empty,
            delimiter=o.delimiter,
        )
        in_scope = vt.texts
        if vt.table is not None and o.label_col in vt.table.column_names:
            cells = vt.table.column(o.label_col).to_pylist()
            keep = [str(c) != o.oos_label for c in cells]
            if len(keep) == len(vt.texts):
                in_scope = [t for t, k in zip(vt.texts, keep, strict=True) if k]
    t0 = time.perf_counter()
    pipe.fit_labels_only(labels, descriptions, in_scope_texts=in_scope)
    pipe.save(o.output, overwrite=o.force, sign=o.sign_key)
    tree = pipe.hierarchy
    levels = f", {tree.depth} levels" if tree is not None else ""
    thr = pipe.info["threshold"]
    console.print(
        f"wrote {o.output}: zero-shot, {len(pipe.classes_)} labels from {len(labels)} "
        f"names / descriptions{levels}; out-of-scope threshold "
        + (
            f"{thr:.4g} (max-cosine) at target FPR {pipe.classifier_.rate():g} on {len(in_scope)} "
            "--val texts"
            if thr is not None
            else "not set: pass --val with typical inputs (labels not needed) to reject "
            "out-of-scope ones; until then nothing is rejected"
        )
        + f"; {time.perf_counter() - t0:.1f} s"
    )


def fit_multi_label(opts: dict, pipe: Any, table: Any, pool: list[str] | None) -> None:
    """`fit --multi-label`: a MultiLabelClassifier pipeline (encoder adapted when asked or
    when ``auto`` says so; self-training on the --unlabeled pool when given)."""
    o = SimpleNamespace(**opts)
    t0 = time.perf_counter()
    pipe.fit(table.texts, table.labels, unlabeled=pool)
    pipe.save(o.output, overwrite=o.force, sign=o.sign_key)
    info = pipe.info
    tr = info["training"]
    held = info["held_out_metrics"]
    never = [k for k, v in info["thresholds"].items() if v is None]
    console.print(
        f"wrote {o.output}: multi-label, {len(pipe.classes_)} labels from {tr['n']} rows "
        f"({tr['n_multi_label']} with several labels, {tr['n_oos']} with none), head "
        f"[bold]{pipe.classifier_.head_}[/]"
        + (
            " (chosen by out-of-fold macro-F1: "
            + ", ".join(f"{k} {v:.3f}" for k, v in info["selection"].items())
            + ")"
            if info.get("selection")
            else ""
        )
        + ", one threshold per label "
        + (f"at precision ≥ {o.target_precision:g}" if o.target_precision else _strategy(pipe))
        + f"; held-out macro-F1 {held['macro_f1']:.3f}, micro-F1 {held['micro_f1']:.3f}; "
        + adapt_summary(info.get("adapted"))
        + f"{time.perf_counter() - t0:.1f} s in all"
    )
    say_self_training(info)
    if never:
        err_console.print(
            f"[yellow]warning:[/] {len(never)} label(s) never reach the target precision on "
            f"held-out rows and will never be predicted: {', '.join(never[:10])}"
        )


def say_self_training(info: dict) -> None:
    st = info.get("self_training")
    if st:
        taken = ", ".join(str(r["pseudo_labelled"]) for r in st["rounds"])
        console.print(
            f"self-training on {st['pool']} unlabelled rows: {taken} confident guesses "
            f"taken in {len(st['rounds'])} round(s) ({st['rejected_in_pool']} rows guessed "
            "out of scope left out)"
        )


def adapt_summary(adapted: dict | None) -> str:
    """One clause of fit's summary: what adaptation did and which checkpoint it kept."""
    if not adapted:
        return "encoder frozen; "
    curve = adapted.get("validation_curve") or []
    what = "R-precision" if adapted.get("multi_label") else "accuracy"
    scores = f" (held-out {what} {curve[0]['accuracy']:.1%} frozen" if curve else ""
    if curve:
        best = max(curve, key=lambda p: (p["accuracy"], p["step"]))
        scores += f", best {best['accuracy']:.1%} at step {best['step']})"
    if adapted.get("kept") == "frozen":
        return (
            f"adaptation ({adapted['steps']} steps, {adapted['seconds']:.0f} s) did not beat "
            f"the frozen encoder on {adapted['validation_rows']} held-out rows{scores}: "
            "encoder kept frozen; "
        )
    return (
        f"encoder adapted in {adapted['seconds']:.0f} s ({adapted['steps']} steps, kept "
        f"{adapted.get('kept', 'last')}{scores}); "
    )


def _strategy(pipe: Any) -> str:
    """How a multi-label fit set its thresholds, in words (and why, when it chose)."""
    clf = pipe.classifier_
    said = {
        "per-label": "maximising its own F1",
        "shrunk": "its own F1-best shrunk toward one global threshold",
        "global": "one global threshold for all",
    }[clf.threshold_strategy_]
    tried = getattr(clf, "threshold_selection_", None)
    if tried:
        said += (
            " (chosen by nested cross-validation: "
            + ", ".join(f"{k} {v:.3f}" for k, v in tried.items())
            + ")"
        )
    return said


def _threshold(pipe: Any) -> str:
    """The out-of-scope threshold and its rate, or that a closed-set model has none."""
    rate, threshold = pipe.classifier_.rate(), pipe.info["threshold"]
    if rate is None:
        return "no out-of-scope threshold (closed set: nothing rejected)"
    if threshold is None:
        return f"no finite threshold at target FPR {rate:g} (nothing rejected)"
    return f"threshold {threshold:.4g} at target FPR {rate:g}"


def _calibration(pipe: Any) -> str:
    """How the threshold was calibrated, in a few words."""
    clf = pipe.classifier_
    n = len(clf.p_reference())
    method = getattr(clf, "calibration_method_", "")
    if method == "split-conformal":
        return f"split conformal on {n} held-out in-scope rows"
    return method or "calibrated"


def say_single_label_fit(pipe: Any, config: Any, output: Any, seconds: float) -> None:
    """What a single-label fit did: classes, head, detector, threshold, adaptation, and the
    warnings a user should read (a time cap that cut adaptation or selection, no oos rows)."""
    info = pipe.info
    adapted = info.get("adapted")
    console.print(
        f"wrote {output}: {len(pipe.classes_)} classes from {info['training']['n']} rows "
        f"({info['training']['n_oos']} out-of-scope), head [bold]{info['head']}[/], "
        f"detector [bold]{info['detector']}[/], {_threshold(pipe)} ({_calibration(pipe)}); "
        + (f"transform {config.transform}; " if config.transform else "")
        + adapt_summary(adapted)
        + f"{seconds:.1f} s in all"
    )
    say_self_training(info)
    if adapted and adapted.get("stopped_by_time_budget"):
        err_console.print(
            f"[yellow]warning:[/] --adapt-budget {config.adapt_budget:g} s cut adaptation after "
            f"{adapted['steps']} of {adapted['planned_steps']} planned steps; the model "
            "depends on this machine's speed (recorded in the bundle)"
        )
    rate = pipe.classifier_.rate()
    if info["training"]["n_oos"] == 0 and rate is None:
        console.print(
            f"no {config.oos_label!r} rows in the training data: a closed-set model, nothing "
            "is rejected (novelty scores and p-values are still given). To reject unusual "
            "inputs too, refit with --target-fpr 0.02 (the share of in-scope inputs it may "
            "reject), or predict with --fdr."
        )
    elif info["training"]["n_oos"] == 0:
        console.print(
            f"no {config.oos_label!r} rows in the training data: the threshold rejects about "
            f"{rate:.0%} of in-scope inputs as out of scope. If your inputs are always one of "
            "these classes, predict and evaluate with --no-reject."
        )
    skipped = (info.get("selection") or {}).get("skipped")
    if skipped:
        err_console.print(
            f"[yellow]warning:[/] --time-budget {config.time_budget:g} s skipped "
            f"{', '.join(skipped)} in the head/detector selection (recorded in the bundle)"
        )


def fit_config(o: dict) -> FitConfig:
    """The fit's options as one FitConfig (checked before any data is read)."""
    same = ("multi_label", "head", "detector", "calibration", "target_precision", "transform")
    same += ("adapt_budget", "time_budget", "hierarchy", "oos_label", "label_sep")
    return FitConfig(
        **{k: o[k] for k in same},
        labels_only=o["labels_only"] is not None,
        target_fpr=parse_target_fpr(o["target_fpr"]),
        adapt="auto" if o["adapt"] is None else o["adapt"],
        validation=o["val"] is not None,
        unlabeled=o["unlabeled"] is not None,
    )
