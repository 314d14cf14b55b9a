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
    SkipEmptyOption,
    SplitOption,
    TextColOption,
    app,
    check_output_dir,
    console,
    plural,
    read_labelled,
    user_errors,
)

PANEL = "Change the class set"


def _describe_change(pipe, output: Path) -> str:
    lineage = pipe.info["lineage"]
    change = lineage["history"][-1]
    verb = "added" if change["op"] == "add" else "removed"
    names = change["classes"]
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    text = (
        f"wrote {output} (version {lineage['version']}): {verb} {plural(len(names), 'class')} "
        f"({shown}; {plural(change['rows'], 'row')}), now {len(pipe.classes_)} classes; head "
        f"updated {change['head_update']}; threshold {change['threshold_before']:.4g} → "
        f"{change['threshold']:.4g} (recalibrated at target FPR "
        f"{pipe.classifier.target_fpr:g})"
    )
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
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the new model to.")
    ],
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    split: SplitOption = None,
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
    force: ForceOption = False,
) -> None:
    """Add classes to a fitted model without refitting it.

    The encoder stays as it is and the head and detector are not re-chosen: prototype and
    Gaussian heads take the new classes in closed form (the same model a fit on all the
    classes would give), other heads are refitted on the rows the model keeps; the detector
    is refitted and its threshold recalibrated so the in-scope rejection target still
    holds. Rows labelled with the model's oos label join its out-of-scope examples. The new
    model records its parent's fingerprint, what changed and a version number.

    [bold]Examples[/]

      embedlab add-classes model/ new_intents.csv -o model_v2/

      embedlab add-classes model/ found/clusters.csv -o model_v2/ --label-col label
    """
    from embedlab.errors import ValidationError
    from embedlab.pipeline import Pipeline

    with user_errors():
        check_output_dir(output, force, data, model_dir)
        if teen not in ("auto", "on", "off"):
            raise ValidationError(f"--teen must be auto, on or off, not {teen!r}")
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        table = read_labelled(data, text_col, label_col, split, skip_empty, delimiter)
        new = pipe.add_classes(
            table.texts, table.labels, teen={"auto": "auto", "on": True, "off": False}[teen]
        )
        new.save(output, overwrite=force)
        console.print(_describe_change(new, output))


@app.command("remove-classes", rich_help_panel=PANEL)
def remove_classes(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    labels: Annotated[list[str], typer.Argument(help="Classes to remove.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the new model to.")
    ],
    backend: BackendOption = None,
    cache: CacheOption = True,
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
    from embedlab.pipeline import Pipeline

    with user_errors():
        check_output_dir(output, force, model_dir)
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        new = pipe.remove_classes(labels)
        new.save(output, overwrite=force)
        console.print(_describe_change(new, output))


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
        typer.Option(
            "--all", help="Cluster every row, not only those the model rejects as out of scope."
        ),
    ] = False,
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
    """Find new classes among the texts a model rejects as out of scope.

    The rejected rows (every row with --all) are clustered in the model's embedding space;
    the number of clusters is estimated, not asked for: the tree of merges is cut where it
    best recovers the model's own labelled classes. Clusters under --min-size rows are
    noise. Each cluster is named by its most distinctive words and shown with its most
    central texts.

    OUTPUT gets clusters.csv (text, label = suggested class name or the model's oos label
    for noise, cluster id, distance to the cluster centre, central flag), summary.json
    (k estimated, sizes, names, words) and report.html. Review clusters.csv — rename a
    cluster in the label column, delete rows you do not want — and pass it to add-classes.

    [bold]Examples[/]

      embedlab discover model/ last_week.csv -o found/

      embedlab add-classes model/ found/clusters.csv -o model_v2/

      embedlab discover model/ unlabelled.jsonl -o found/ --all --min-size 10
    """
    import json

    import numpy as np
    import pyarrow as pa

    from embedlab.atomic import atomic_directory
    from embedlab.discover import discover_classes
    from embedlab.errors import ValidationError
    from embedlab.pipeline import Pipeline
    from embedlab.readers import read_texts, write_table
    from embedlab.report import discovery_report, write_report

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
        X = pipe.embed(table.texts)
        clf = pipe.classifier
        if all_rows:
            chosen = np.ones(len(X), dtype=bool)
            selection = f"all {len(X)} rows"
        else:
            chosen = clf.predict_details(X, top_k=1)["out_of_scope"]
            selection = f"the {int(chosen.sum())} of {len(X)} rows the model rejects"
            if not chosen.any():
                raise ValidationError(
                    f"the model rejects none of the {len(X)} rows of {data.name}: nothing to "
                    "discover among them (--all clusters every row)"
                )
        if chosen.sum() < min_size:
            raise ValidationError(
                f"{selection.removeprefix('the ')}: fewer than --min-size {min_size}, "
                "too few to form a cluster"
            )
        if not hasattr(clf, "train_X_"):
            raise ValidationError(
                f"{model_dir} does not keep its training vectors (fitted by an older embedlab "
                "or with keep_rows=False): discover calibrates on them; refit the model"
            )
        texts = [t for t, c in zip(table.texts, chosen, strict=True) if c]
        Xs = X[chosen]
        found = discover_classes(
            Xs,
            texts,
            reference=(clf.train_X_, np.asarray(clf.classes_, dtype=object)[clf.train_class_]),
            min_size=min_size,
            n_central=central,
            reserved=[*map(str, clf.classes_), pipe.oos_label],
            seed=seed,
        )
        names = found.names()
        labels = np.where(names == None, pipe.oos_label, names)  # noqa: E711
        order = np.lexsort((found.distance, np.where(found.labels < 0, 1 << 30, found.labels)))
        rows = pa.table(
            {
                text_col: pa.array([texts[i] for i in order], type=pa.string()),
                "label": pa.array([str(labels[i]) for i in order], type=pa.string()),
                "cluster": pa.array(found.labels[order].tolist(), type=pa.int64()),
                "distance": pa.array(found.distance[order].tolist(), type=pa.float32()),
                "central": pa.array(found.central[order].tolist(), type=pa.bool_()),
            }
        )
        summary = {
            "format": "embedlab.discovery",
            "model": str(model_dir),
            "data": str(data),
            "selection": selection,
            "n_rows": len(X),
            "n_selected": int(chosen.sum()),
            "k_estimated": found.k,
            "n_noise": int((found.labels < 0).sum()),
            "noise_label": pipe.oos_label,
            "min_size": min_size,
            "cut": found.cut,
            "calibration": found.calibration,
            "clusters": [c.__dict__ for c in found.clusters],
        }
        shown = np.where(names == None, "noise", names)  # noqa: E711
        html = discovery_report(summary, Xs, [str(s) for s in shown], texts)
        with atomic_directory(output, overwrite=force) as tmp:
            write_table(rows, tmp / "clusters.csv")
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            write_report(html, tmp / "report.html")
        console.print(
            f"wrote {output}: {plural(found.k, 'cluster')} among {selection} "
            f"({plural(summary['n_noise'], 'noise row')}); review clusters.csv, then "
            f"`embedlab add-classes {model_dir} {output / 'clusters.csv'} -o NEW_MODEL`"
        )
        for c in found.clusters[:10]:
            console.print(
                f"  {c.id:>3}  {c.name:<28} {c.size:>5} rows  e.g. {c.central_texts[0]!r}"
            )
        if found.k > 10:
            console.print(f"  ... {found.k - 10} more in {output / 'summary.json'}")
