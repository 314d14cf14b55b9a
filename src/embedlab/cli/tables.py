"""The table-model paths of `embedlab fit`, `predict`, `evaluate` and `plan`: records with
categorical (and numeric) columns beside, or instead of, the text."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from embedlab.cli.common import console, err_console, plural
from embedlab.core.errors import EmbedlabError, ValidationError

_PANEL = "Records: text + columns"
CatColsOption = Annotated[
    str | None,
    typer.Option(
        help="Categorical columns (comma-separated) to learn embedding tables for, beside "
        "the text (or alone with --no-text): a table model (see --tables, --budget).",
        rich_help_panel=_PANEL,
    ),
]
NumColsOption = Annotated[
    str | None,
    typer.Option(
        help="Numeric columns (comma-separated) of a table model.", rich_help_panel=_PANEL
    ),
]
TablesOption = Annotated[
    str,
    typer.Option(
        help="Table kind: auto (full when it fits --budget, else qr), full, hash, qr "
        "(quotient-remainder), mixed (width by frequency) or unified (one shared table).",
        rich_help_panel=_PANEL,
    ),
]
BudgetOption = Annotated[
    str | None,
    typer.Option(
        help="Bytes for all tables together, e.g. 2MB or 512KiB (default: full tables). "
        "`embedlab plan DATA --cat-cols ... --target y` measures what each budget costs.",
        rich_help_panel=_PANEL,
    ),
]
NoTextOption = Annotated[
    bool,
    typer.Option("--no-text", help="A table model without a text column.", rich_help_panel=_PANEL),
]
SelectColumnsOption = Annotated[
    bool,
    typer.Option(
        "--select-columns",
        help="Leave out the categorical / numeric columns whose absence lowers the held-out "
        "log-loss (one extra fit per column; the fit says which and by how much).",
        rich_help_panel=_PANEL,
    ),
]
TableSeedOption = Annotated[
    int, typer.Option(help="Seed of a table model's training.", rich_help_panel=_PANEL)
]

__all__ = [
    "evaluate_tables",
    "fit_tables",
    "is_table_model",
    "plan_tables_command",
    "predict_tables",
    "report_tables",
    "split_columns",
]

#: fit options that make no sense for a table model, and their defaults
_NOT_FOR_TABLES = {
    "labels_only": None, "hierarchy": None, "val": None, "multi_label": False,
    "transform": None, "drop_label_issues": False, "detector": "auto", "calibration": "split",
    "target_fpr": "auto",
}  # fmt: skip


def split_columns(value: str | None) -> list[str]:
    """``"a,b, c"`` → ["a", "b", "c"] (column names may hold spaces inside)."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def is_table_model(path: Path) -> bool:
    from embedlab.store.manifest import saved_kind

    return saved_kind(path) == "tables"


def _read(data: Path, split: list[str] | None, delimiter: str | None):
    from embedlab.data.readers import read_table

    return read_table(data, splits=split, delimiter=delimiter)


def _text_col(table: Any, text_col: str, no_text: bool, explicit: bool) -> str | None:
    if no_text:
        return None
    if text_col in table.column_names:
        return text_col
    if explicit:
        raise ValidationError(f"no text column {text_col!r} in the data (--no-text: none)")
    return None


def fit_tables(opts: dict[str, Any]) -> None:
    """`embedlab fit DATA --cat-cols … [--num-cols …]`: a TableModel, saved as a directory."""
    from embedlab.encoders.loading import open_encoder
    from embedlab.tables import TableModel
    from embedlab.tables.model import check_table_options

    check_table_options(adapt=opts["adapt"] is True, unlabeled=opts["unlabeled"])
    given = [
        "--" + k.replace("_", "-") for k, v in _NOT_FOR_TABLES.items() if opts.get(k) not in (v,)
    ]
    if given:
        raise ValidationError(
            f"{', '.join(given)} do not apply to a model with --cat-cols / --num-cols "
            "(a table model has no out-of-scope detector, adaptation or label sets yet)"
        )
    head = {"auto": "mlp", "mlp": "mlp", "linear": "linear"}.get(opts["head"])
    if head is None:
        raise EmbedlabError(f"a table model takes --head auto, mlp or linear, not {opts['head']!r}")
    table = _read(opts["data"], opts["split"], opts["delimiter"])
    label_col = opts["label_col"]
    if label_col not in table.column_names:
        raise ValidationError(
            f"no label column {label_col!r} in {opts['data']} (--label-col names it; it has "
            f"{', '.join(table.column_names[:15])})"
        )
    labels = table.column(label_col).to_pylist()
    missing = [i + 1 for i, v in enumerate(labels) if v is None or str(v).strip() == ""]
    if missing:
        raise ValidationError(
            f"{len(missing)} row(s) of {opts['data']} have no label (rows "
            f"{', '.join(map(str, missing[:10]))}, counted from 1)"
        )
    text_col = _text_col(table, opts["text_col"], opts["no_text"], opts["text_col"] != "text")
    encoder = None
    if text_col is not None:
        encoder = open_encoder(opts["model"], cache=opts["cache"], backend=opts["backend"])
    model = TableModel(
        cat_cols=split_columns(opts["cat_cols"]),
        num_cols=split_columns(opts["num_cols"]),
        text_col=text_col,
        encoder=encoder,
        tables=opts["tables"],
        budget=opts["budget"],
        head=head,
        seed=opts["seed"],
        select_columns=opts["select_columns"],
    )
    t0 = time.perf_counter()
    model.fit(table, labels, progress=True)
    model.save(opts["output"], overwrite=opts["force"])
    info = model.info
    text = f"text {text_col!r} + " if text_col else "no text; "
    console.print(
        f"wrote {opts['output']}: {len(model.classes_)} classes from "
        f"{plural(info['rows'], 'row')}, "
        f"{text}{len(model.layout_.columns)} categorical + {len(model.numeric_columns_)} numeric "
        f"column(s); tables [bold]{model.layout_.kind}[/] {_size(model.layout_.bytes)} "
        f"(full tables: {_size(model.layout_.full_bytes)}; vocabulary "
        f"{_size(model.layout_.vocabulary_bytes)}); head {head}; "
        f"held-out log-loss {info['validation_log_loss']:.4f} after {info['best_epoch']} of "
        f"{info['epochs_run']} epochs; {time.perf_counter() - t0:.1f} s"
    )
    for line in model.layout_.describe():
        console.print(f"  {line}", highlight=False)
    chosen = info.get("column_selection")
    if chosen:
        deltas = chosen["held_out_log_loss_change_without"]
        said = ", ".join(f"{c} {d:+.4f}" for c, d in deltas.items())
        left = ", ".join(chosen["left_out"]) or "none"
        console.print(f"column selection: left out {left} (held-out log-loss without each: {said})")


def _size(n: int) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n} B"


def predict_tables(
    model_dir: Path,
    data: Path,
    output: Path,
    *,
    chunk_rows: int,
    keep_columns: bool,
    id_col: str | None,
    split: list[str] | None,
    delimiter: str | None,
    cache: bool,
    backend: str | None,
    refused: dict[str, Any] | None = None,
) -> None:
    """Predict records chunk by chunk into ``output`` (written to a temporary file beside it,
    moved into place when complete): memory bounded by a chunk. ``refused``: the predict
    options given that a table model does not take (fdr, sets, explain, ray: said)."""
    import pyarrow as pa

    from embedlab.data.text_chunks import iter_tables
    from embedlab.scale.predict_stream import prediction_table
    from embedlab.store.atomic import remove_stale_temps
    from embedlab.tables import TableModel
    from embedlab.tables.model import check_table_options

    check_table_options(**(refused or {}))

    model = TableModel.load(model_dir, cache=cache, backend=backend)
    remove_stale_temps(output)  # what a killed earlier run left beside it
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    fmt = output.suffix.lower().lstrip(".")
    writer: Any = None
    n = 0
    unseen: dict[str, int] = {}
    try:
        for chunk in iter_tables(data, chunk_rows, splits=split, delimiter=delimiter):
            if id_col and id_col not in chunk.column_names:
                raise ValidationError(f"no id column {id_col!r} in {data} (--id-col)")
            counts: dict[str, Any] = {}
            pred = model.predict_details(chunk, counts=counts)
            for k, v in counts["unseen"].items():
                unseen[k] = unseen.get(k, 0) + v
            if keep_columns:
                base = chunk
            elif id_col:
                base = pa.table({id_col: chunk.column(id_col)})
            else:
                base = pa.table({"row": pa.array(range(n, n + chunk.num_rows), pa.int64())})
            out = prediction_table(pred, base, leave_out=("novelty", "out_of_scope"))
            writer = _write_chunk(writer, tmp, fmt, out)
            n += chunk.num_rows
        if hasattr(writer, "close"):
            writer.close()
            writer = None
        os.replace(tmp, output)
    finally:
        if hasattr(writer, "close"):
            writer.close()
        if tmp.exists():
            tmp.unlink()
    seen = ", ".join(f"{k} {v:,}" for k, v in unseen.items() if v)
    console.print(
        f"wrote {output}: {plural(n, 'prediction')}"
        + (f"; values the fit never saw (shared row): {seen}" if seen else "")
    )


def _write_chunk(writer: Any, tmp: Path, fmt: str, table: Any) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        writer = writer or pq.ParquetWriter(str(tmp), table.schema)
        writer.write_table(table)
    elif fmt == "csv":
        writer = writer or pacsv.CSVWriter(str(tmp), table.schema)
        writer.write_table(table)
    else:
        with open(tmp, "a", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        writer = writer or True
    return writer


def evaluate_tables(
    model_dir: Path,
    data: Path,
    *,
    label_col: str,
    split: list[str] | None,
    delimiter: str | None,
    as_json: bool,
    cache: bool,
    backend: str | None,
) -> None:
    from embedlab.tables import TableModel

    model = TableModel.load(model_dir, cache=cache, backend=backend)
    table = _read(data, split, delimiter)
    if label_col not in table.column_names:
        raise ValidationError(f"no label column {label_col!r} in {data}")
    metrics = model.evaluate(table, table.column(label_col).to_pylist())
    if as_json:
        print(json.dumps(metrics))
        return
    auc = f", AUC {metrics['auc']:.4f} ({metrics['positive_class']!r})" if "auc" in metrics else ""
    console.print(
        f"{model_dir} on {data}: {metrics['rows']:,} rows, accuracy {metrics['accuracy']:.2%}, "
        f"macro-F1 {metrics['macro_f1']:.4f}, log-loss {metrics['log_loss']:.4f}{auc}"
    )
    seen = {k: v for k, v in metrics["unseen_values"].items() if v}
    if seen:
        console.print(f"values the fit never saw (read through the shared row): {seen}")


def report_tables(model_dir: Path, data: Path, *, label_col: str, split: list[str] | None) -> str:
    """The HTML report of a table model on labelled records."""
    from embedlab.analysis.tables_report import table_model_report
    from embedlab.tables import TableModel

    model = TableModel.load(model_dir)
    table = _read(data, split, None)
    if label_col not in table.column_names:
        raise ValidationError(f"no label column {label_col!r} in {data} (--label-col)")
    return table_model_report(
        model,
        table,
        table.column(label_col).to_pylist(),
        title=f"embedlab report: {model_dir.name} on {data.name}",
    )


def plan_tables_command(
    data: Path,
    output: Path,
    *,
    cat_cols: str,
    num_cols: str | None,
    target: str,
    text_col: str,
    no_text: bool,
    split: list[str] | None,
    tolerance: float,
    test_size: float,
    seed: int,
    plot: bool,
    as_json: bool,
    model: str | None,
    backend: str | None,
) -> None:
    """`embedlab plan DATA --cat-cols … --target y`: the table kinds × budgets."""
    from rich.table import Table

    from embedlab.data.readers import write_table
    from embedlab.encoders.loading import open_encoder
    from embedlab.store.atomic import atomic_write_bytes
    from embedlab.tables.planning import plan_tables

    table = _read(data, split, None)
    if target not in table.column_names:
        raise ValidationError(f"no target column {target!r} in {data}")
    text = _text_col(table, text_col, no_text, text_col != "text")
    enc = open_encoder(model, backend=backend) if text else None
    plan = plan_tables(
        table,
        table.column(target).to_pylist(),
        cat_cols=split_columns(cat_cols),
        num_cols=split_columns(num_cols),
        text_col=text,
        encoder=enc,
        tolerance=tolerance,
        test_size=test_size,
        seed=seed,
        progress=True,
    )
    output.mkdir(parents=True, exist_ok=True)
    write_table(plan.table(), output / "plan.csv")
    atomic_write_bytes(output / "plan.json", json.dumps(plan.summary(), indent=1).encode())
    if plot:
        plan.plot(output / "plan.png")
    if as_json:
        print(json.dumps(plan.summary()))
        return
    t = Table(title=f"table kinds × budgets on {data.name} (held-out {test_size:.0%})")
    for c in ("kind", "share of full", "bytes", "log-loss", "accuracy", "AUC", "Pareto"):
        t.add_column(c)
    for r in plan.rows:
        t.add_row(r["kind"], f"{r['fraction']:g}", _size(r["bytes"]), f"{r['log_loss']:.4f}",
                  f"{r['accuracy']:.4f}", "" if r["auc"] is None else f"{r['auc']:.4f}",
                  "★" if r["pareto"] else "")  # fmt: skip
    console.print(t)
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    pick = plan.recommended
    console.print(
        f"recommended: [bold]--tables {pick['kind']} --budget {pick['bytes']}[/] "
        f"({_size(pick['bytes'])}, {pick['fraction']:g} of full tables' "
        f"{_size(plan.full_bytes)}; log-loss {pick['log_loss']:.4f}, within "
        f"{tolerance:.1%} of the best); wrote {output}/plan.csv, plan.json"
        + (", plan.png" if plot else "")
    )
