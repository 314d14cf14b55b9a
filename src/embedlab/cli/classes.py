"""`embedlab add-classes`, `remove-classes` and `discover`: changing a model's class set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli.common import (
    BackendOption,
    CacheOption,
    DelimiterOption,
    ForceOption,
    LabelColOption,
    SignOption,
    SkipEmptyOption,
    SplitOption,
    TextColOption,
    app,
    check_output_dir,
    console,
    plural,
    read_labelled,
    signing_key,
    user_errors,
)

PANEL = "Change the class set"

OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Directory to write the new model to."),
]
InPlaceOption = Annotated[
    bool,
    typer.Option(
        "--in-place",
        help="Replace MODEL_DIR with the new version (atomically: a server with `serve "
        "--watch` swaps it in) instead of writing to --output.",
    ),
]


def _target(model_dir: Path, output: Path | None, in_place: bool, force: bool, *inputs) -> Path:
    """Where the new version goes: --output (checked before any work) or MODEL_DIR itself."""
    from embedlab.core.errors import ValidationError

    if in_place == (output is not None):
        raise ValidationError("give --output DIR or --in-place (one of the two)")
    if in_place:
        from embedlab.store.atomic import check_replaceable

        check_replaceable(model_dir)  # nothing of the user's in it (before any work)
        return model_dir
    check_output_dir(output, force, *inputs, model_dir)
    return output


def _save_change(parent, new, target: Path, in_place: bool, force: bool, key) -> None:
    """Write the new version: in place only over the version it was made from (another
    writer's newer version is never overwritten: VersionConflict names it)."""
    if in_place:
        new.save(target, overwrite=True, expect_stamp=parent.source_stamp, sign=key)
    else:
        new.save(target, overwrite=force, sign=key)


def _describe_change(pipe, output: Path) -> str:
    lineage = pipe.info["lineage"]
    change = lineage["history"][-1]
    verb = "added" if change["op"] == "add" else "removed"
    names = change["classes"]
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    text = (
        f"wrote {output} (version {lineage['version']}): {verb} {plural(len(names), 'class')} "
        f"({shown}; {plural(change['rows'], 'row')}), now {len(pipe.classes_)} classes; head "
        f"updated {change['head_update']}; "
    )
    if "threshold" in change:
        text += f"threshold {change['threshold_before']:.4g} → {change['threshold']:.4g} " + (
            f"(recalibrated at target FPR {rate:g})"
            if (rate := pipe.classifier_.rate()) is not None
            else "(closed set: nothing rejected)"
        )
    else:  # multi-label: one threshold per label
        text += change["detector_update"]
    if change.get("teen_classes"):
        text += f"; TEEN moved {plural(len(change['teen_classes']), 'few-shot class')}"
    return text


@app.command("add-classes", rich_help_panel=PANEL)
def add_classes(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled rows of the new classes (CSV, TSV, JSONL, JSON, Parquet), e.g. a "
            "reviewed clusters.csv from `embedlab discover`."
        ),
    ],
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    split: SplitOption = None,
    parent: Annotated[
        list[str] | None,
        typer.Option(
            help="CLASS=PARENT: where a new class goes in the model's hierarchy (repeat; "
            "required for each new class of a model fitted with --hierarchy)."
        ),
    ] = None,
    teen: Annotated[
        str,
        typer.Option(
            help="Move the means of few-shot new classes toward similar known classes (TEEN): "
            "auto (classes with ≤ 10 examples), on (all added classes) or off."
        ),
    ] = "auto",
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    backend: BackendOption = None,
    cache: CacheOption = True,
    sign: SignOption = None,
    force: ForceOption = False,
) -> None:
    """Add classes to a fitted model without refitting it.

    The encoder stays as it is and the head and detector are not re-chosen: prototype and
    Gaussian heads take the new classes in closed form (the same model a fit on all the
    classes would give), other heads are refitted on the rows the model keeps; the detector
    is refitted and its threshold recalibrated so the in-scope rejection target still
    holds. Rows labelled with the model's oos label join its out-of-scope examples. The new
    model records its parent's fingerprint, what changed and a version number.

    A multi-label model takes rows whose label cells (joined by its separator) name new
    labels, possibly beside known ones: linear and prototype heads fit only the new
    labels' scorers and thresholds and keep the known ones exactly; mlp and knn heads are
    refit on the kept rows.

    [bold]Examples[/]

      embedlab add-classes model/ new_intents.csv -o model_v2/

      embedlab add-classes model/ found/clusters.csv -o model_v2/ --label-col label

      embedlab add-classes model/ jokes.csv --in-place --parent tell_joke=small_talk
    """
    from embedlab.core.errors import ValidationError
    from embedlab.models.pipeline import Pipeline

    with user_errors():
        target = _target(model_dir, output, in_place, force, data)
        key = signing_key(sign)
        if teen not in ("auto", "on", "off"):
            raise ValidationError(f"--teen must be auto, on or off, not {teen!r}")
        parents = {}
        for item in parent or []:
            child, sep, par = item.partition("=")
            if not sep or not child.strip() or not par.strip():
                raise ValidationError(f"--parent takes CLASS=PARENT, not {item!r}")
            parents[child.strip()] = par.strip()
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        if pipe.multi_label and teen != "auto":
            raise ValidationError("--teen applies to single-label models; this one is multi-label")
        table = read_labelled(data, text_col, label_col, split, skip_empty, delimiter)
        new = pipe.add_classes(
            table.texts,
            table.labels,
            teen={"auto": "auto", "on": True, "off": False}[teen],
            parents=parents or None,
        )
        _save_change(pipe, new, target, in_place, force, key)
        console.print(_describe_change(new, target))


@app.command("remove-classes", rich_help_panel=PANEL)
def remove_classes(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    labels: Annotated[list[str], typer.Argument(help="Classes to remove.")],
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    backend: BackendOption = None,
    cache: CacheOption = True,
    sign: SignOption = None,
    force: ForceOption = False,
) -> None:
    """Remove classes from a fitted model without refitting it.

    Their kept training rows are dropped, prototype and Gaussian heads lose them in closed
    form (other heads are refitted on the remaining rows), and the detector is refitted and
    its threshold recalibrated. Inputs of a removed class are then predicted as another
    class or rejected as out of scope.

    [bold]Examples[/]

      embedlab remove-classes model/ cancel_order -o model_v3/

      embedlab remove-classes model/ pto_request pto_balance -o model_v3/
    """
    from embedlab.models.pipeline import Pipeline

    with user_errors():
        target = _target(model_dir, output, in_place, force)
        key = signing_key(sign)
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        new = pipe.remove_classes(labels)
        _save_change(pipe, new, target, in_place, force, key)
        console.print(_describe_change(new, target))


@app.command(rich_help_panel=PANEL)
def discover(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    data: Annotated[
        Path, typer.Argument(help="Texts to search for new classes (CSV, TSV, JSONL, Parquet).")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Directory for clusters.csv, summary.json, report.html."
        ),
    ],
    text_col: TextColOption = "text",
    split: SplitOption = None,
    all_rows: Annotated[
        bool,
        typer.Option("--all", help="Cluster every row, not only those the model finds unusual."),
    ] = False,
    level: Annotated[
        float,
        typer.Option(
            help="Consider the rows whose conformal p-value is at most this: looser than the "
            "model's rejection rate, so near novelties it labels as a known class are "
            "considered too (the known-class rows this lets in form known clusters or noise)."
        ),
    ] = 0.1,
    min_size: Annotated[int, typer.Option(help="Clusters with fewer rows are noise.", min=2)] = 5,
    central: Annotated[
        int, typer.Option(help="Most central texts shown (and flagged) per cluster.", min=1)
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the sampling steps.")] = 0,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    backend: BackendOption = None,
    cache: CacheOption = True,
    force: ForceOption = False,
) -> None:
    """Find new classes among the texts a model finds unusual.

    The rows whose p-value is at most --level (every row with --all) are clustered in the
    model's embedding space;
    the number of clusters is estimated, not asked for: the tree of merges is cut where it
    best recovers the model's own labelled classes. Clusters under --min-size rows are
    noise. A cluster whose centre sits on a known class is that class, not a new one
    (known_class in clusters.csv). Each new cluster is named by its most distinctive
    words and shown with its most central texts.

    OUTPUT gets clusters.csv (text, label = suggested class name or the model's oos label
    for noise and known classes, cluster id, known_class, distance to the cluster centre,
    central flag), summary.json
    (k estimated, sizes, names, words) and report.html. Review clusters.csv — rename a
    cluster in the label column, delete rows you do not want — and pass it to add-classes.

    [bold]Examples[/]

      embedlab discover model/ last_week.csv -o found/

      embedlab add-classes model/ found/clusters.csv -o model_v2/

      embedlab discover model/ unlabelled.jsonl -o found/ --all --min-size 10
    """
    from embedlab.analysis.discover import save_discovery
    from embedlab.data.readers import read_texts
    from embedlab.models.pipeline import Pipeline

    with user_errors():
        check_output_dir(output, force, data, model_dir)
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        table = read_texts(
            data,
            text_col=text_col,
            label_col=None,
            splits=split,
            on_empty="skip" if skip_empty else "error",
            delimiter=delimiter,
        )
        found = pipe.discover(
            table.texts,
            all_rows=all_rows,
            level=level,
            min_size=min_size,
            n_central=central,
            seed=seed,
        )
        save_discovery(
            found,
            output,
            overwrite=force,
            noise_label=pipe.oos_label,
            text_col=text_col,
            model=str(model_dir),
            data=str(data),
        )
        selection = found.selection
        console.print(
            f"wrote {output}: {plural(found.k, 'new cluster')}"
            + (f" and {known} of known classes" if (known := len(found.clusters) - found.k) else "")
            + f" among {selection} "
            f"({plural(int((found.labels < 0).sum()), 'noise row')}); review clusters.csv, then "
            f"`embedlab add-classes {model_dir} {output / 'clusters.csv'} -o NEW_MODEL`"
        )
        for c in found.clusters[:10]:
            name = c.name if c.known is None else f"= {c.known} (known)"
            console.print(f"  {c.id:>3}  {name:<28} {c.size:>5} rows  e.g. {c.central_texts[0]!r}")
        if len(found.clusters) > 10:
            more = len(found.clusters) - 10
            console.print(f"  ... {more} more in {output / 'summary.json'}")
