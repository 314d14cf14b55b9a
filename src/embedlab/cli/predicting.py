"""`embedlab predict` and `evaluate`: a fitted model's labels for new data, and its metrics
on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedlab.cli.common import (
    BackendOption,
    CacheOption,
    DelimiterOption,
    ForceOption,
    LabelColOption,
    RayActorsOption,
    RayAddressOption,
    RayOption,
    RejectOption,
    SkipEmptyOption,
    SplitOption,
    StudentOption,
    TextColOption,
    app,
    check_output_file,
    console,
    plural,
    print_table,
    ray_options,
    read_labelled,
    say_skipped,
    user_errors,
)
from embedlab.core.errors import EmbedlabError


@app.command(rich_help_panel="Classify")
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="Texts to label (CSV, TSV, JSONL, JSON, Parquet), or an EmbeddingSet "
            "directory (sharded or not) encoded with the model's encoder."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output file: .csv, .jsonl or .parquet.")
    ],
    text_col: TextColOption = "text",
    id_col: Annotated[
        str | None, typer.Option(help="Column of row ids (kept under its own name).")
    ] = None,
    split: SplitOption = None,
    keep_columns: Annotated[
        bool,
        typer.Option(
            "--keep-columns/--no-keep-columns",
            help="Copy the input's columns (text included) before the predictions; without, "
            "only the id column.",
        ),
    ] = True,
    reject: RejectOption = True,
    fdr: Annotated[
        float | None,
        typer.Option(
            help="Reject as a batch instead of row by row: the rows Benjamini-Hochberg picks "
            "from every row's oos_pvalue, so that the expected share of in-scope rows among "
            "the rejected is at most this (e.g. 0.1).",
        ),
    ] = None,
    sets: Annotated[
        float | None,
        typer.Option(
            help="Add each row's prediction set: the labels that hold the true one with "
            "this probability (e.g. 0.9), in prediction_set (joined by |) and set_size. "
            "Single-label models.",
        ),
    ] = None,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    encoder: StudentOption = None,
    backend: BackendOption = None,
    cache: CacheOption = True,
    chunk_rows: Annotated[
        int,
        typer.Option(
            help="Rows per chunk: the input is read, predicted and written one chunk at a "
            "time (memory bounded by a chunk)."
        ),
    ] = 65_536,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Start over, discarding an unfinished earlier run for OUTPUT (by default a "
            "run with the same input, model and options resumes where it stopped).",
        ),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Add the concepts behind each label and novelty score (columns concepts, "
            "novelty_concepts, explanation); the model needs concepts (`embedlab concepts`).",
        ),
    ] = False,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = 2,
    force: ForceOption = False,
) -> None:
    """Label texts (or stored vectors) with a fitted model; out-of-scope inputs get the
    model's oos label (unless --no-reject).

    OUTPUT holds the input's columns, then: label (label_<level> per coarser level of a
    hierarchy, n_labels for multi-label), confidence (the head's top-1 probability),
    novelty (higher = more unusual; above the threshold = out of scope), out_of_scope,
    oos_pvalue (the conformal p-value: an in-scope row gets p <= t with probability <= t;
    out of scope exactly when p <= the model's target rate), prediction_set / set_size
    (with --sets), top1_label / top1_confidence .. top3_*, and with --explain concepts
    (the top concepts behind the label: "name (+contribution to the margin over the
    runner-up)"), novelty_concepts and explanation (JSON) (a name the input already uses becomes
    predicted_<name>). OUTPUT may not be the input, and an existing
    OUTPUT needs --force. The input is processed chunk by chunk; a run that was stopped
    (Ctrl-C, a crash, kill -9) resumes when started again.

    [bold]Examples[/]

      embedlab predict model/ new.csv -o predictions.csv

      embedlab predict model/ tickets.jsonl -o labelled.parquet --text-col body --id-col ticket_id

      embedlab predict model/ new.csv -o predictions.csv --no-reject   [dim]# closed-set data[/]

      embedlab predict model/ batch.csv -o flagged.csv --fdr 0.1 --sets 0.9

      embedlab predict model/ new.csv -o predictions.csv --encoder student/   [dim]# distilled[/]

      embedlab predict model/ new.csv -o why.csv --explain   [dim]# concepts behind each answer[/]
    """
    from embedlab.models.pipeline import Pipeline
    from embedlab.scale.predict_stream import predict_file
    from embedlab.store.manifest import sha256_file

    with user_errors():
        check_output_file(output, force, data, model_dir)
        if encoder is not None:
            check_output_file(output.with_name(output.name + ".student.json"), force, data)
        if output.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
            raise EmbedlabError(f"{output}: output must end in .csv, .jsonl or .parquet")
        from embedlab.cli.tables import is_table_model, predict_tables

        if is_table_model(model_dir):
            if encoder is not None or not reject or restart:
                raise EmbedlabError(
                    "--encoder, --no-reject and --restart do not apply to a table model "
                    "(it encodes with its own encoder, rejects nothing, and writes its output "
                    "in one go)"
                )
            predict_tables(
                model_dir, data, output, chunk_rows=chunk_rows, keep_columns=keep_columns,
                id_col=id_col, split=split, delimiter=delimiter, cache=cache, backend=backend,
                refused={"fdr": fdr, "sets": sets, "explain": explain, "ray": ray},
            )  # fmt: skip
            return
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        teacher = _stand_in(pipe, encoder, ray)
        model_id = sha256_file(model_dir / "bundle.json")
        if teacher is not None:
            model_id += ":" + pipe.encoder_.fingerprint
        job = predict_file(
            pipe,
            data,
            output,
            chunk_rows=chunk_rows,
            reject=reject,
            keep_columns=keep_columns,
            text_col=text_col,
            id_col=id_col,
            splits=split,
            on_empty="skip" if skip_empty else "error",
            delimiter=delimiter,
            model_id=model_id,
            restart=restart,
            ray=ray_options(ray, ray_address, ray_actors),
            model_dir=model_dir,
            fdr=fdr,
            sets=sets,
            explain=explain,
        )
        say_skipped(job)
        rejected = f"{job.out_of_scope} out of scope" if reject else "rejection off (--no-reject)"
        if fdr is not None:
            rejected += f" (Benjamini-Hochberg at FDR {fdr:g} over all {job.rows} rows)"
        resumed = (
            f"; {job.resumed} of {job.chunks} chunks done by an earlier run" if job.resumed else ""
        )
        console.print(f"wrote {output}: {plural(job.rows, 'prediction')}, {rejected}{resumed}")
        if teacher is not None:
            _record_agreement(pipe, teacher, data, output, text_col, split, delimiter, reject)


@app.command(rich_help_panel="Classify")
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    data: Annotated[
        Path, typer.Argument(help="Labelled test data; out-of-scope rows carry the oos label.")
    ],
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    split: SplitOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    reject: RejectOption = True,
    hierarchy: Annotated[
        Path | None,
        typer.Option(
            help="Parents of the labels (CSV child,parent or JSON): accuracy at every level "
            "and wrong leaves with the right parent (default: the model's own, if any)."
        ),
    ] = None,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    encoder: StudentOption = None,
    backend: BackendOption = None,
    cache: CacheOption = True,
) -> None:
    """Measure accuracy and out-of-scope detection on labelled data.

    accuracy: in-scope rows, a rejection counts as an error; head_accuracy: the same rows
    with no rejection (what closed-set classifiers report); overall_accuracy: all rows, an
    out-of-scope row is correct when rejected; oos_auroc and fpr_at_95_tpr from the
    novelty scores. On data with no out-of-scope rows, head_accuracy is the figure to
    compare, and --no-reject evaluates (and `predict --no-reject` predicts) without
    rejection.

    A multi-label model (fit with --multi-label) reads each label cell as a set joined by
    its separator and reports micro_f1, macro_f1, subset_accuracy (the whole set right),
    hamming_loss, label cardinality true / predicted, and per label precision, recall, F1
    and the threshold.

    [bold]Examples[/]

      embedlab evaluate model/ test.csv --json

      embedlab evaluate model/ test.csv --no-reject
    """
    from embedlab.models.pipeline import Pipeline

    with user_errors():
        from embedlab.models.hierarchy import read_hierarchy

        tree = read_hierarchy(hierarchy) if hierarchy is not None else None
        from embedlab.cli.tables import evaluate_tables, is_table_model

        if is_table_model(model_dir):
            evaluate_tables(
                model_dir, data, label_col=label_col, split=split, delimiter=delimiter,
                as_json=as_json, cache=cache, backend=backend,
            )  # fmt: skip
            return
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        teacher = _stand_in(pipe, encoder, False)
        table = read_labelled(data, text_col, label_col, split, skip_empty, delimiter)
        metrics = pipe.evaluate(table.texts, table.labels, reject=reject, hierarchy=tree)
        if teacher is not None:
            from embedlab.models.stand_in import agreement

            metrics["student"] = agreement(pipe, teacher, table.texts, reject=reject)
        if as_json:
            print(json.dumps(metrics))
            return
        _print_metrics(metrics, title=f"{model_dir} on {data}")
        if "student" in metrics:
            _print_agreement(metrics["student"])
        if pipe.multi_label:
            _print_per_label(metrics["per_label"])
            return
        if "hierarchy" in metrics:
            h = metrics["hierarchy"]
            levels = ", ".join(f"{k} {v:.2%}" for k, v in h["accuracy_by_level"].items())
            share = h["wrong_leaf_right_parent_share"]
            console.print(
                f"accuracy by level (top first): {levels}; of {h['wrong_leaf']} wrong labels, "
                f"{h['wrong_leaf_right_parent']} have the right parent"
                + (f" ({share:.0%})" if share is not None else "")
            )
        if reject and not metrics["n_oos"] and metrics["accuracy"] is not None:
            console.print(
                f"no out-of-scope rows in {data.name}: head accuracy (no rejection) "
                f"{metrics['head_accuracy']:.2%} is the figure comparable with closed-set "
                f"classifiers; rejection turned {metrics['in_scope_rejected']:.2%} of the rows "
                "away (--no-reject: predict and evaluate without it)"
            )


def _stand_in(pipe, student: Path | None, ray: bool):
    """Swap in the student named by --encoder; the teacher encoder it replaced, or None."""
    if student is None:
        return None
    if ray:
        raise EmbedlabError("--encoder runs in this process: drop --ray to predict through it")
    from embedlab.encoders.loading import open_encoder
    from embedlab.models.stand_in import use_encoder

    return use_encoder(pipe, open_encoder(student))


def _record_agreement(pipe, teacher, data, output, text_col, split, delimiter, reject) -> None:
    """Measure the student against the teacher on a sample of the input; print it and
    write it to OUTPUT.student.json."""
    from embedlab.data.text_chunks import iter_texts
    from embedlab.models.stand_in import AGREEMENT_ROWS, agreement
    from embedlab.store.atomic import atomic_write_bytes

    if not data.is_file():
        return  # stored vectors: nothing to compare
    _, first = next(
        iter_texts(
            data,
            AGREEMENT_ROWS,
            text_col=text_col,
            label_col=None,
            on_empty="skip",
            splits=split,
            delimiter=delimiter,
        )
    )
    found = agreement(pipe, teacher, first.texts, reject=reject)
    found["measured_on"] = f"the first {found['rows']} rows of {data.name}"
    _print_agreement(found)
    record = output.with_name(output.name + ".student.json")
    atomic_write_bytes(record, json.dumps(found, indent=1).encode("utf-8"))
    console.print(f"recorded in {record}")


def _print_agreement(found: dict) -> None:
    console.print(
        f"student {found['student']} ({found['kind']}): label agreement with the teacher "
        f"{found['label_agreement']:.1%} on {found['rows']} rows, fidelity "
        f"{found['fidelity_mean_cosine']:.3f} mean cosine (5th percentile "
        f"{found['fidelity_p05_cosine']:.3f}); out of scope {found['out_of_scope_student']} "
        f"vs the teacher's {found['out_of_scope_teacher']}"
    )


def _print_metrics(metrics: dict, title: str) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    first = ("accuracy", "head_accuracy")  # side by side: with and without rejection
    ordered = {k: metrics[k] for k in first if k in metrics} | metrics
    for key, value in ordered.items():
        if isinstance(value, dict):
            continue  # per-label detail: a table of its own
        if isinstance(value, float):
            shown = f"{value:.2f} s" if key == "seconds" else f"{value:.4f}"
        else:
            shown = "n/a" if value is None else str(value)
        table.add_row(key, shown)
    print_table(table)


def _print_per_label(per_label: dict) -> None:
    table = Table(title="per label (worst F1 first)", title_justify="left")
    for col in ("label", "precision", "recall", "F1", "support", "threshold"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for name, m in sorted(per_label.items(), key=lambda kv: (kv[1]["f1"], kv[0])):
        t = m.get("threshold")
        table.add_row(
            name,
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
            str(m["support"]),
            "never" if t is None else f"{t:.4g}",
        )
    print_table(table)
