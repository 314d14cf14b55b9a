"""`embedlab diagnose` and `report`: is a space any good, and where does a model fail."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from embedlab.cli.common import (
    ForceOption,
    LabelColOption,
    SkipEmptyOption,
    SplitOption,
    StudentOption,
    TextColOption,
    app,
    check_output_file,
    console,
    err_console,
    print_table,
    read_input_texts,
    read_labelled,
    user_errors,
)


@app.command("diagnose", rich_help_panel="Diagnose")
def diagnose_space(
    space: Annotated[
        Path, typer.Argument(help="An EmbeddingSet directory (from `embedlab encode`).")
    ],
    sample: Annotated[
        int, typer.Option(help="Rows for the quadratic measures (silhouette; 2x for kNN).")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the samples.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    label_issues: Annotated[
        bool,
        typer.Option(
            "--label-issues",
            help="Also find wrong labels by confident learning (cleanlab) on out-of-fold "
            "probabilities of a linear head; rows labelled --oos-label are never flagged.",
        ),
    ] = False,
    suspects: Annotated[
        Path, typer.Option(help="--label-issues: where to write the suspects (CSV...).")
    ] = Path("suspects.csv"),
    oos_label: Annotated[
        str, typer.Option(help="The out-of-scope label (not a label error).")
    ] = "oos",
    force: ForceOption = False,
) -> None:
    """Is this embedding space any good for its labels? Geometry, separability, likely
    label errors and near-duplicates.

    RankMe (effective rank), alignment and uniformity, isotropy, Fisher ratio, silhouette,
    NC1 (within-class collapse), the most confusable class pairs, rows whose neighbours
    disagree with their label, and near-duplicate pairs. Label measures need a labelled
    space. Quadratic measures use a seeded sample and say how large.

    [bold]Examples[/]

      embedlab diagnose space/

      embedlab diagnose clinc-train/ --json > diagnostics.json

      embedlab diagnose clinc-train/ --label-issues --suspects suspects.csv
    """
    from embedlab.analysis.diagnose import MEASURE_NOTES, diagnose
    from embedlab.data.embedding_set import EmbeddingSet

    with user_errors():
        if label_issues:
            check_output_file(suspects, force, space)
        es = EmbeddingSet.load(space)
        report = diagnose(es, sample=sample, seed=seed)
        if label_issues:
            report["label_issues"] = _label_issues(es, suspects, oos_label, seed)
        if as_json:
            typer.echo(json.dumps(report, default=float))
            return
        from rich.table import Table

        table = Table(title=f"{space}: {report['n']} × {report['dim']}")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_column("note")
        for key in ("rankme", "uniformity", "alignment", "fisher_ratio", "silhouette", "nc1"):
            if key in report:
                v = report[key]
                value = v["value"] if isinstance(v, dict) else v
                table.add_row(key, f"{value:.4g}", MEASURE_NOTES[key][1])
        iso = report["isotropy"]
        table.add_row(
            "isotropy", f"{iso['partition_ratio']:.3g}", f"mean cosine {iso['mean_cosine']:.3f}"
        )
        print_table(table)
        if "confusable_pairs" in report:
            pairs = report["confusable_pairs"][:5]
            console.print(
                "most confusable classes: "
                + "; ".join(f"{p['a']} ~ {p['b']} ({p['cosine']:.3f})" for p in pairs)
            )
        if "label_errors" in report:
            le = report["label_errors"]
            rows = le["rows"][:5]
            console.print(
                f"likely label errors: {len(le['rows'])} of {le['checked']} rows checked"
                + (
                    ""
                    if not rows
                    else ", e.g. "
                    + "; ".join(
                        f"row {r['row'] + 1} ({es.ids[r['row']]}) labelled {r['label']}, "
                        f"neighbours say {r['neighbours_say']}"
                        for r in rows[:3]
                    )
                )
            )
        nd = report["near_duplicates"]
        console.print(
            f"near-duplicate pairs (cosine ≥ {nd['threshold']}): {len(nd['pairs'])} among "
            f"{nd['checked']} rows checked"
        )


def _label_issues(es: Any, suspects: Path, oos_label: str, seed: int) -> dict:
    """Confident learning on the space's labels; suspects written; a summary for the
    report (and printed unless --json)."""
    from embedlab.core.errors import ValidationError
    from embedlab.data.readers import write_table
    from embedlab.labeling.label_issues import label_issues

    if es.labels is None:
        raise ValidationError("--label-issues needs a labelled space (encode with --label-col)")
    found = label_issues(es.vectors, es.labels, oos_label=oos_label, seed=seed)
    write_table(found.to_table(ids=es.ids, texts=es.texts), suspects)
    err_console.print(
        f"label issues: {len(found)} suspects of {found.checked} rows checked "
        f"(out-of-fold {found.head} head, cleanlab) → {suspects}"
        + "".join(f"; {n}" for n in found.notes)
    )
    return found.summary()


@app.command(rich_help_panel="Diagnose")
def report(
    source: Annotated[
        Path,
        typer.Argument(
            help="A model bundle or table model (from `embedlab fit`), or an EmbeddingSet "
            "directory."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Argument(help="Labelled data to evaluate the model on (model reports only)."),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    plan_dir: Annotated[
        Path | None,
        typer.Option(
            "--plan", help="A folder (or plan.json) from `embedlab plan`: adds its heat map."
        ),
    ] = None,
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    split: SplitOption = None,
    max_points: Annotated[int, typer.Option(help="Points drawn on the map at most.")] = 3000,
    skip_empty: SkipEmptyOption = False,
    encoder: StudentOption = None,
    map_dir: Annotated[
        Path | None,
        typer.Option(
            "--map",
            help="A map from `embedlab align`: adds where it is weak (fidelity each way, "
            "the classes it moves most) — e.g. for a model migrated through it.",
        ),
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            help="Reference texts (e.g. the training data; labels not needed): for a model "
            "with concepts, which concepts rose or fell in DATA against them.",
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Write one self-contained HTML report (works offline: no scripts, no CDN).

    With a model and labelled data: headline metrics, confusion hot spots, per-class
    accuracy, in-scope vs out-of-scope score histograms with the threshold, ROC curve,
    diagnostics and a map of the embeddings; for a model with concepts, each class's
    concepts (and with --against, the concepts that rose or fell). With an EmbeddingSet:
    diagnostics and the map.

    [bold]Examples[/]

      embedlab report model/ test.csv -o report.html

      embedlab report model/ ../shared/data/clinc150/data_full.json --split test --split oos_test

      embedlab report space/ -o space.html --plan embedlab-plan/

      embedlab report model-v2/ test.csv -o migrated.html --map map/

      embedlab report model/ this_week.csv -o drift.html --against train.csv
    """
    from embedlab.analysis.report import model_report, space_report, write_report
    from embedlab.store.manifest import saved_kind

    with user_errors():
        check_output_file(output, force, source, data, plan_dir, map_dir, against)
        t0 = time.perf_counter()
        alignment = None
        if map_dir is not None:
            from embedlab.align import Alignment

            alignment = Alignment.load(map_dir)
        if saved_kind(source) == "tables":
            from embedlab.cli.tables import report_tables

            if data is None:
                raise typer.BadParameter("a model report needs DATA with labels to evaluate on")
            html = report_tables(source, data, label_col=label_col, split=split)
        elif saved_kind(source) == "bundle":
            from embedlab.models.pipeline import Pipeline

            if data is None:
                raise typer.BadParameter("a model report needs DATA with labels to evaluate on")
            pipe = Pipeline.load(source)
            if encoder is not None:  # a student of the model's encoder reports in its place
                from embedlab.encoders.loading import open_encoder
                from embedlab.models.stand_in import use_encoder

                use_encoder(pipe, open_encoder(encoder))
            table = read_labelled(data, text_col, label_col, split, skip_empty)
            reference = None
            if against is not None:
                reference = list(
                    read_input_texts(against, text_col=text_col, skip_empty=skip_empty).texts
                )
            html = model_report(
                pipe,
                table.texts,
                table.labels,
                title=f"embedlab report: {source.name} on {data.name}",
                plan=plan_dir,
                max_points=max_points,
                alignment=alignment,
                against=reference,
            )
        else:
            from embedlab.data.embedding_set import EmbeddingSet

            es = EmbeddingSet.load(source)
            html = space_report(
                es,
                title=f"embedlab report: {source.name}",
                plan=plan_dir,
                max_points=max_points,
                alignment=alignment,
            )
        path = write_report(html, output)
        console.print(
            f"wrote {path} ({len(html.encode()) / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s"
        )
