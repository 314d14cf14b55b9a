"""`embedlab plan`: quality vs bytes vs time on the user's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedlab.cli.common import (
    BackendOption,
    LabelColOption,
    ModelOption,
    SkipEmptyOption,
    SplitOption,
    TextColOption,
    app,
    console,
    print_table,
    read_labelled,
    user_errors,
)


def _int_list(value: str | None, what: str) -> list[int] | None:
    from embedlab.core.errors import ValidationError

    if value is None or not value.strip():
        return None
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise ValidationError(f"--{what} takes comma-separated integers, not {value!r}") from None


@app.command(rich_help_panel="Plan")
def plan(
    data: Annotated[
        Path,
        typer.Argument(
            help="Your data: labelled texts (classify, retrieve) or scored pairs (sts)."
        ),
    ],
    task: Annotated[str, typer.Option(help="classify, retrieve or sts.")] = "classify",
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Directory for plan.csv, plan.json and plan.png."),
    ] = Path("embedlab-plan"),
    max_bytes: Annotated[
        float | None, typer.Option(help="Most bytes one stored vector may take.")
    ] = None,
    max_ms: Annotated[
        float | None,
        typer.Option(help="Most milliseconds per item: encoding + search / classification."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Quality to rank by: accuracy or auroc (classify), mrr@10 or recall@10 "
            "(retrieve), spearman (sts). Default: the first."
        ),
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="Layers to try, e.g. '2,4,6' (default: all).")
    ] = None,
    dims: Annotated[
        str | None,
        typer.Option(
            help="Dimensions to try, e.g. '384,128,64' (default: full, 256, 128, 64, 32)."
        ),
    ] = None,
    storage: Annotated[
        list[str] | None,
        typer.Option(help="float32, int8, binary, pq (repeatable; default: all four)."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(help="Recommend the smallest choice within this fraction of the best."),
    ] = 0.005,
    test_size: Annotated[float, typer.Option(help="Share of each label held out.")] = 0.2,
    head: Annotated[str, typer.Option(help="classify: head used to measure accuracy.")] = "auto",
    detector: Annotated[
        str, typer.Option(help="classify: detector used to measure OOS AUROC.")
    ] = "auto",
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    oos_label: Annotated[str, typer.Option(help="Label of out-of-scope rows.")] = "oos",
    split: SplitOption = None,
    first_col: Annotated[str, typer.Option(help="sts: first sentence column.")] = "sentence1",
    second_col: Annotated[str, typer.Option(help="sts: second sentence column.")] = "sentence2",
    score_col: Annotated[str, typer.Option(help="sts: gold score column.")] = "score",
    model: ModelOption = None,
    student: Annotated[
        list[Path] | None,
        typer.Option(
            help="A student made by `embedlab distill` to measure beside the grid, whole, "
            "at every storage (repeatable); the recommendation may pick it."
        ),
    ] = None,
    backend: BackendOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write plan.png.")] = True,
    skip_empty: SkipEmptyOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    cat_cols: Annotated[
        str | None,
        typer.Option(
            help="Plan learned tables instead: categorical columns (comma-separated); every "
            "table kind at 1/2 … 1/32 of the full tables' bytes is fitted and scored.",
            rich_help_panel="Records: text + columns",
        ),
    ] = None,
    num_cols: Annotated[
        str | None,
        typer.Option(
            help="With --cat-cols: numeric columns.", rich_help_panel="Records: text + columns"
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="With --cat-cols: the column to predict.",
            rich_help_panel="Records: text + columns",
        ),
    ] = None,
    no_text: Annotated[
        bool,
        typer.Option(
            "--no-text",
            help="With --cat-cols: leave the text out.",
            rich_help_panel="Records: text + columns",
        ),
    ] = False,
) -> None:
    """Measure quality vs bytes vs time for every layer × dimension × storage on YOUR data,
    and recommend the cheapest choice that keeps quality.

    Holds out part of each label, encodes every layer in one pass (cached), and measures
    each (layer, dim, float32 | int8 | binary | pq): accuracy and OOS AUROC (classify),
    recall@10 and MRR@10 of same-label retrieval (retrieve), or Spearman (sts). Prints the
    Pareto front and a recommendation you can paste into `embedlab fit --transform` or
    `embedlab encode --layer --dim` + `embedlab index --spec`.

    [bold]Examples[/]

      embedlab plan train.csv                                   (classify, all choices)

      embedlab plan adult.parquet --cat-cols education,occupation --target income --no-text
        (learned tables: kinds x budgets)

      embedlab plan ../shared/data/clinc150/data_full.json --max-bytes 128 --max-ms 2

      embedlab plan faq.jsonl --task retrieve --text-col question --label-col answer_id

      embedlab plan ../shared/data/stsb/sts-dev.csv --task sts --dims 384,128,64

      embedlab plan train.csv --student static/ --student shallow/    (with distilled students)
    """
    from embedlab.compress.planner import plan as make_plan
    from embedlab.data.pair_files import read_pairs
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.encoders.loading import open_encoder

    with user_errors():
        if cat_cols or target:
            from embedlab.cli.tables import plan_tables_command
            from embedlab.core.errors import ValidationError

            if not (cat_cols and target):
                raise ValidationError("planning tables needs both --cat-cols and --target")
            plan_tables_command(
                data, output, cat_cols=cat_cols, num_cols=num_cols, target=target,
                text_col=text_col, no_text=no_text, split=split, tolerance=tolerance,
                test_size=test_size, seed=seed, plot=plot, as_json=as_json,
                model=model, backend=backend,
            )  # fmt: skip
            return
        students = [open_encoder(s) for s in student or ()]
        layer_list, dim_list = _int_list(layers, "layers"), _int_list(dims, "dims")
        texts = labels = pairs = None
        if task == "sts":
            pairs = read_pairs(
                data,
                first_col=first_col,
                second_col=second_col,
                score_col=score_col,
                splits=split,
            )
        else:
            table = read_labelled(data, text_col, label_col, split, skip_empty)
            texts, labels = table.texts, table.labels
        result = make_plan(
            texts,
            labels,
            task=task,
            pairs=pairs,
            encoder=SentenceTransformerEncoder(model, backend=backend),
            layers=layer_list,
            dims=dim_list,
            storages=storage,
            metric=metric,
            head=head,
            detector=detector,
            oos_label=oos_label,
            test_size=test_size,
            max_bytes=max_bytes,
            max_ms=max_ms,
            tolerance=tolerance,
            seed=seed,
            progress=None if not as_json else False,
            students=students,
        )
        paths = result.save(output, plot=plot)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), default=float))
        else:
            _print_plan(result, paths)
        if result.recommended is None:
            raise typer.Exit(1)


def _print_plan(result, paths: dict) -> None:

    ref = result.reference
    table = Table(
        title=f"Pareto front — {result.task}, ranked by {result.metric} "
        f"(reference: layer {ref.layer}, dim {ref.dim}, float32 = {ref.quality:.4f})"
    )
    for col in (
        "layer / student" if any(r.student for r in result.rows) else "layer",
        "dim",
        "storage",
        "bytes",
        "× smaller",
        result.metric,
        "kept",
        "ms/item",
    ):
        table.add_column(col, justify="left" if col == "storage" else "right", no_wrap=True)
    extra = [m for m in (result.rows[0].metrics if result.rows else {}) if m != result.metric]
    for m in extra:
        table.add_column(m, justify="right")
    front = sorted((r for r in result.rows if r.pareto), key=lambda r: r.bytes_per_vector)
    rec = result.recommended
    for r in front:
        style = "bold green" if r is rec else None
        table.add_row(
            Path(r.student).name if r.student else str(r.layer),
            str(r.dim),
            r.storage,
            f"{r.bytes_per_vector:g}",
            f"{ref.bytes_per_vector / r.bytes_per_vector:.0f}",
            f"{r.quality:.4f}",
            f"{100 * r.quality / ref.quality:.1f}%" if ref.quality else "n/a",
            f"{r.total_ms:.2f}",
            *[f"{r.metrics[m]:.4f}" for m in extra],
            style=style,
        )
    print_table(table)
    for note in result.data.get("notes", []):
        console.print(f"note: {note}")
    for r in (r for r in result.rows if r.student and r.storage == "float32"):
        console.print(
            f"student {Path(r.student).name}: {result.metric} {r.quality:.4f} "
            f"({100 * r.quality / ref.quality:.1f}% of the reference), encode "
            f"{r.encode_ms:.3f} ms/text vs {ref.encode_ms:.3f}, {r.encoder_mb:.1f} MB on disk"
        )
    if rec is None:
        console.print(
            "[bold red]no configuration meets the limits[/] "
            f"(--max-bytes {result.max_bytes}, --max-ms {result.max_ms}); "
            "the measured grid is in the CSV"
        )
    else:
        how = result.next_command()
        console.print(
            f"[bold green]recommended:[/] {rec.name} — {result.metric} {rec.quality:.4f} "
            f"({100 * rec.quality / ref.quality:.1f}% of the reference), "
            f"{rec.bytes_per_vector:g} bytes/vector "
            f"({ref.bytes_per_vector / rec.bytes_per_vector:.0f}× smaller), "
            f"{rec.total_ms:.2f} ms/item\n  {how}"
        )
    console.print(
        f"{len(result.rows)} configurations measured in {result.seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in paths.values())
    )
