"""The ``embedlab`` command line: a thin layer over the library."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from embedlab import __version__
from embedlab.errors import EmbedlabError

app = typer.Typer(
    name="embedlab",
    help=(
        "Machine learning on top of a frozen embedding model.\n\n"
        "Start with [bold]embedlab demo[/], then encode your own data:\n\n"
        "  embedlab encode data.csv -o space/\n\n"
        "  embedlab info space/"
    ),
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


BackendOption = Annotated[
    str | None,
    typer.Option(
        help="How the encoder runs: auto (fastest backend that passes a quality check "
        "against torch), torch, onnx or onnx-int8. Default: $EMBEDLAB_BACKEND, else auto."
    ),
]


ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Replace OUTPUT if it exists (and embedlab wrote it).")
]
SkipEmptyOption = Annotated[
    bool, typer.Option(help="Drop empty texts (and say how many) instead of failing.")
]
DelimiterOption = Annotated[
    str | None,
    typer.Option(
        help="Field delimiter of a CSV / TSV file (default: comma / tab, or what the header "
        "line uses: ';', '|')."
    ),
]


def _read_texts(data: Path, *, skip_empty: bool = False, **kwargs):
    """read_texts with --skip-empty mapped, saying which rows were skipped."""
    from embedlab.readers import read_texts

    table = read_texts(data, on_empty="skip" if skip_empty else "error", **kwargs)
    _say_skipped(table)
    return table


def _say_skipped(table) -> None:
    if table.skipped_rows:
        rows = [r + 1 for r in table.skipped_rows]
        err_console.print(
            f"[yellow]skipped {len(rows)} empty text(s)[/] at row(s) "
            f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''} (counted from 1)"
        )


def _rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 10 else f"{r:.2g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print library errors as one readable line and exit 2, without a traceback."""
    try:
        yield
    except EmbedlabError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # a file the system refused: permissions, disk full, ...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        err_console.print(
            f"[bold red]error:[/] {exc.strerror or exc}{where}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None


def _check_output_dir(output: Path, force: bool, *inputs: Path | None) -> None:
    """Stop before any work when OUTPUT may not be written (see atomic.check_output_dir)."""
    from embedlab.atomic import check_output_dir

    check_output_dir(output, force=force, inputs=tuple(p for p in inputs if p is not None))


def _check_output_file(output: Path, force: bool, *inputs: Path | None) -> None:
    """Stop before any work when file OUTPUT may not be written."""
    from embedlab.atomic import check_output_file

    check_output_file(output, force=force, inputs=tuple(p for p in inputs if p is not None))


def _setup_logging(verbose: bool = False) -> None:
    """Show embedlab's own log records on stderr (the root logger is not touched)."""
    log = logging.getLogger("embedlab")
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not any(getattr(h, "_embedlab_cli", False) for h in log.handlers):
        handler = RichHandler(console=err_console, show_path=False, show_time=False)
        handler._embedlab_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)


def _version(value: bool) -> None:
    if value:
        console.print(f"embedlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    _setup_logging()


@app.command()
def encode(
    data: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL, JSON or Parquet file of texts.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the EmbeddingSet to.")
    ],
    text_col: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    label_col: Annotated[
        str | None,
        typer.Option(
            help="Column holding labels (default: 'label' when the file has it; a column you "
            "name must exist)."
        ),
    ] = None,
    id_col: Annotated[
        str | None, typer.Option(help="Column of unique row ids (default: row number).")
    ] = None,
    delimiter: DelimiterOption = None,
    split: Annotated[
        list[str] | None,
        typer.Option(help="Split(s) of a split-layout JSON such as CLINC150's (repeatable)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Local sentence-transformers model directory (default: packaged all-MiniLM-L6-v2)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    normalize: Annotated[
        bool, typer.Option("--normalize/--no-normalize", help="L2-normalise the vectors.")
    ] = False,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache", help="Reuse vectors of texts encoded before ($EMBEDLAB_CACHE)."
        ),
    ] = True,
    skip_empty: SkipEmptyOption = False,
    keep_text: Annotated[
        bool, typer.Option("--keep-text/--no-keep-text", help="Store the texts in rows.parquet.")
    ] = True,
    layer: Annotated[
        int | None,
        typer.Option(
            help="Mean-pool this transformer layer (1..L) instead of the last; only k layers run."
        ),
    ] = None,
    dim: Annotated[
        int | None,
        typer.Option(help="Keep the first DIM dimensions (Matryoshka truncation), renormalised."),
    ] = None,
    first_last_average: Annotated[
        bool, typer.Option(help="Average the first layer with the chosen (or last) layer.")
    ] = False,
    backend: BackendOption = None,
    force: ForceOption = False,
) -> None:
    """Encode the texts of DATA into an EmbeddingSet directory.

    Row i of OUTPUT/vectors.npy is the vector of data row i; ids, labels, texts and any
    other columns go to OUTPUT/rows.parquet, and OUTPUT/manifest.json records the encoder.

    [bold]Examples[/]

      embedlab encode intents.csv -o space/

      embedlab encode tickets.jsonl -o space/ --text-col body --label-col queue

      embedlab encode ../shared/data/clinc150/data_full.json --split train -o clinc-train/

      embedlab encode intents.csv -o space-l4-d128/ --layer 4 --dim 128
    """
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.encoding import encode_table

    with _user_errors():
        _check_output_dir(output, force, data, model)
        table = _read_texts(
            data,
            text_col=text_col,
            label_col=label_col or "label",
            require_labels=label_col is not None,
            id_col=id_col,
            skip_empty=skip_empty,
            splits=split,
            delimiter=delimiter,
        )
        encoder = SentenceTransformerEncoder(
            model,
            batch_size=batch_size,
            normalize=normalize,
            cache=cache,
            layer=layer,
            dim=dim,
            first_last_average=first_last_average,
            backend=backend,
        )
        t0 = time.perf_counter()
        es = encode_table(table, encoder, keep_text=keep_text)
        secs = time.perf_counter() - t0
        es.save(output, overwrite=force)
        st = encoder.last_stats
        setup = st.get("load_seconds") or 0.0
        timing = f"{secs:.1f} s in all"
        if setup >= 0.5:
            timing += f", of which {setup:.1f} s loading / preparing the model"
        if st["encoded"]:
            timing += f"; {_rate(st['encoded'] / max(secs, 1e-9))} texts/s overall"
            if setup >= 0.5 and st["texts_per_second"]:
                timing += f", {_rate(st['texts_per_second'])}/s once ready"
        console.print(
            f"wrote {output}: {es.n} × {es.dim} float32 from {encoder.name} "
            f"({st['encoded']} encoded, {st['cached']} from cache; {timing}; "
            f"backend {encoder.resolved_backend})"
        )


@app.command("import")
def import_vectors(
    vectors: Annotated[
        Path, typer.Argument(help=".npy, Parquet or CSV file of precomputed vectors.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the EmbeddingSet to.")
    ],
    vector_col: Annotated[
        str | None, typer.Option(help="Parquet list column holding the vectors.")
    ] = None,
    id_col: Annotated[str, typer.Option(help="Id column, if present.")] = "id",
    label_col: Annotated[str, typer.Option(help="Label column, if present.")] = "label",
    force: ForceOption = False,
) -> None:
    """Turn precomputed vectors into an EmbeddingSet directory.

    Parquet: a list column (vector / embedding) or all numeric columns; CSV: all numeric
    columns except id and label; .npy: an (n, d) array.

    [bold]Example[/]

      embedlab import clip_vectors.parquet -o space/
    """
    from embedlab.space import EmbeddingSet

    with _user_errors():
        _check_output_dir(output, force, vectors)
        es = EmbeddingSet.from_file(
            vectors, vector_col=vector_col, id_col=id_col, label_col=label_col
        )
        es.save(output, overwrite=force)
        console.print(f"wrote {output}: {es.n} × {es.dim} float32")


@app.command()
def info(
    space: Annotated[Path, typer.Argument(help="An EmbeddingSet directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check file checksums.")
    ] = True,
) -> None:
    """Show an EmbeddingSet's shape, provenance and label counts.

    [bold]Example[/]

      embedlab info space/
    """
    from embedlab.space import EmbeddingSet, read_manifest

    with _user_errors():
        es = EmbeddingSet.load(space, verify=verify)
        manifest = read_manifest(space)
        prov = es.provenance
        counts = es.label_counts()
        if as_json:
            print(
                json.dumps(
                    {
                        "path": str(space),
                        "n": es.n,
                        "dim": es.dim,
                        "dtype": "float32",
                        "provenance": prov.to_dict(),
                        "label_counts": counts,
                        "texts": es.texts is not None,
                        "metadata": [] if es.metadata is None else es.metadata.column_names,
                        "saved": manifest.get("saved"),
                        "embedlab_version": manifest.get("embedlab_version"),
                    },
                    indent=2,
                )
            )
            return
        enc = prov.encoder or {}
        table = Table(show_header=False, title=f"EmbeddingSet {space}", title_justify="left")
        table.add_row("shape", f"{es.n} × {es.dim} float32")
        table.add_row(
            "encoder",
            f"{enc.get('name', 'unknown')} ({enc.get('kind', 'precomputed')})"
            if enc
            else "unknown (precomputed vectors)",
        )
        if enc.get("fingerprint"):
            table.add_row("fingerprint", enc["fingerprint"])
        table.add_row("layer", "last" if prov.layer is None else str(prov.layer))
        table.add_row("normalized", str(prov.normalized))
        table.add_row("source", str(prov.source))
        table.add_row("created", prov.created)
        table.add_row("texts kept", "yes" if es.texts is not None else "no")
        if es.metadata is not None:
            table.add_row("metadata", ", ".join(es.metadata.column_names))
        if counts:
            shown = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:12])
            more = f" … ({len(counts)} labels)" if len(counts) > 12 else ""
            table.add_row("labels", shown + more)
        else:
            table.add_row("labels", "none")
        console.print(table)


@app.command()
def fit(
    data: Annotated[
        Path, typer.Argument(help="Labelled training data (CSV, TSV, JSONL, JSON, Parquet).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the model bundle to.")
    ],
    text_col: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the labels.")] = "label",
    oos_label: Annotated[
        str, typer.Option(help="Label of out-of-scope rows: used only for calibration.")
    ] = "oos",
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(help="Validation data: its in-scope rows set the out-of-scope threshold."),
    ] = None,
    val_split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of --val when it is a split-layout JSON.")
    ] = None,
    adapt: Annotated[
        bool | None,
        typer.Option(
            "--adapt/--no-adapt",
            help="Fine-tune the encoder on the labels first (default: automatic).",
        ),
    ] = None,
    head: Annotated[
        str, typer.Option(help="auto, prototype, knn, linear, gaussian or qda.")
    ] = "auto",
    detector: Annotated[
        str,
        typer.Option(
            help="auto, max-cosine, knn, mahalanobis, relative-mahalanobis, max-prob or energy."
        ),
    ] = "auto",
    target_fpr: Annotated[
        float, typer.Option(help="Share of in-scope inputs the threshold may reject.")
    ] = 0.02,
    time_budget: Annotated[
        float | None,
        typer.Option(
            help="Cap, in seconds, on the automatic head/detector selection (default: none — "
            "every candidate is tried, so the choice depends on the data only)."
        ),
    ] = None,
    adapt_budget: Annotated[
        float | None,
        typer.Option(
            help="Cap, in seconds, on encoder adaptation (default: none — its length comes from "
            "the data). A cap that cuts training makes the model depend on the machine's "
            "speed; the output and the bundle say so."
        ),
    ] = None,
    backend: BackendOption = None,
    transform: Annotated[
        str | None,
        typer.Option(
            help="Vector transform between encoder and classifier, e.g. 'layer4,dim128,norm' or "
            "'center,whiten,int8' (see `embedlab plan` to choose one)."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Local sentence-transformers model directory (default: packaged all-MiniLM-L6-v2)."
        ),
    ] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached vectors.")] = True,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    force: ForceOption = False,
) -> None:
    """Fit a classifier that also says when an input is none of the known classes.

    Rows labelled with --oos-label are never learned as a class; they only help choose the
    detector and check its threshold. The head and detector are chosen by cross-validation
    on the training data unless named.

    [bold]Examples[/]

      embedlab fit train.csv -o model/

      embedlab fit ../shared/data/clinc150/data_full.json --split train --split oos_train -o model/

      embedlab fit train.csv --val val.csv -o model/     (threshold set on val's in-scope rows)

      embedlab fit tickets.jsonl -o model/ --text-col body --label-col queue --no-adapt

      embedlab fit train.csv -o small/ --transform layer3,dim128,norm,int8   (cheaper vectors)
    """
    from embedlab.adapt import AdaptConfig
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.openset import OpenSetClassifier
    from embedlab.pipeline import Pipeline
    from embedlab.transforms import TransformChain

    with _user_errors():
        _check_output_dir(output, force, data, val, model)
        table = _read_texts(
            data,
            text_col=text_col,
            label_col=label_col,
            splits=split,
            require_labels=True,
            skip_empty=skip_empty,
            delimiter=delimiter,
        )
        clf = OpenSetClassifier(
            head=head,
            detector=detector,
            target_fpr=target_fpr,
            oos_label=oos_label,
            time_budget=time_budget,
        )
        layer = TransformChain(transform).layer if transform else None
        pipe = Pipeline(
            encoder=SentenceTransformerEncoder(model, cache=cache, layer=layer, backend=backend),
            classifier=clf,
            adapt="auto" if adapt is None else adapt,
            adapt_config=AdaptConfig(time_budget=adapt_budget),
            transform=transform,
        )
        validation = None
        if val is not None:
            vt = _read_texts(
                val,
                text_col=text_col,
                label_col=label_col,
                splits=val_split,
                require_labels=True,
                skip_empty=skip_empty,
                delimiter=delimiter,
            )
            validation = (vt.texts, vt.labels)
        t0 = time.perf_counter()
        pipe.fit(table.texts, table.labels, validation=validation)
        pipe.save(output, overwrite=force)
        info = pipe.info
        adapted = info.get("adapted")
        console.print(
            f"wrote {output}: {len(pipe.classes_)} classes from {info['training']['n']} rows "
            f"({info['training']['n_oos']} out-of-scope), head [bold]{info['head']}[/], "
            f"detector [bold]{info['detector']}[/], threshold {info['threshold']:.4g} at "
            f"target FPR {target_fpr:g}; "
            + (f"transform {transform}; " if transform else "")
            + (
                f"encoder adapted in {adapted['seconds']:.0f} s ({adapted['steps']} steps); "
                if adapted
                else "encoder frozen; "
            )
            + f"{time.perf_counter() - t0:.1f} s in all"
        )
        if adapted and adapted.get("stopped_by_time_budget"):
            err_console.print(
                f"[yellow]warning:[/] --adapt-budget {adapt_budget:g} s cut adaptation after "
                f"{adapted['steps']} of {adapted['planned_steps']} planned steps; the model "
                "depends on this machine's speed (recorded in the bundle)"
            )
        skipped = (info.get("selection") or {}).get("skipped")
        if skipped:
            err_console.print(
                f"[yellow]warning:[/] --time-budget {time_budget:g} s skipped "
                f"{', '.join(skipped)} in the head/detector selection (recorded in the bundle)"
            )


def _prediction_table(details: dict, table, id_col: str | None, keep_columns: bool):
    """The input's columns (or just its ids) followed by the prediction columns; a
    prediction column whose name the input already uses is called predicted_<name>."""
    import pyarrow as pa

    if keep_columns and table.table is not None:
        out = table.table
    else:
        out = pa.table({id_col or "id": pa.array(table.ids, type=pa.string())})
    for k, v in details.items():
        name = f"predicted_{k}" if k in out.column_names else k
        out = out.append_column(name, pa.array(v.tolist()))
    return out


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    data: Annotated[Path, typer.Argument(help="Texts to label (CSV, TSV, JSONL, JSON, Parquet).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output file: .csv, .jsonl or .parquet.")
    ],
    text_col: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    id_col: Annotated[
        str | None, typer.Option(help="Column of row ids (kept under its own name).")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    keep_columns: Annotated[
        bool,
        typer.Option(
            "--keep-columns/--no-keep-columns",
            help="Copy the input's columns (text included) before the predictions; without, "
            "only the id column.",
        ),
    ] = True,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    backend: BackendOption = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached vectors.")] = True,
    force: ForceOption = False,
) -> None:
    """Label texts with a fitted model; out-of-scope inputs get the model's oos label.

    OUTPUT holds the input's columns, then: label, score (novelty: higher = more out of
    scope), out_of_scope, and the top-3 labels with their probabilities (a name the input
    already uses becomes predicted_<name>). OUTPUT may not be the input, and an existing
    OUTPUT needs --force.

    [bold]Examples[/]

      embedlab predict model/ new.csv -o predictions.csv

      embedlab predict model/ tickets.jsonl -o labelled.parquet --text-col body --id-col ticket_id
    """
    from embedlab.pipeline import Pipeline
    from embedlab.readers import write_table

    with _user_errors():
        _check_output_file(output, force, data, model_dir)
        if output.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
            raise EmbedlabError(f"{output}: output must end in .csv, .jsonl or .parquet")
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        table = _read_texts(
            data,
            text_col=text_col,
            label_col=None,
            id_col=id_col,
            splits=split,
            skip_empty=skip_empty,
            delimiter=delimiter,
        )
        details = pipe.predict_details(table.texts)
        write_table(_prediction_table(details, table, id_col, keep_columns), output)
        n_oos = int(details["out_of_scope"].sum())
        console.print(f"wrote {output}: {_plural(len(table), 'prediction')}, {n_oos} out of scope")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")],
    data: Annotated[
        Path, typer.Argument(help="Labelled test data; out-of-scope rows carry the oos label.")
    ],
    text_col: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the labels.")] = "label",
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    backend: BackendOption = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached vectors.")] = True,
) -> None:
    """Measure accuracy and out-of-scope detection on labelled data.

    accuracy: in-scope rows, a rejection counts as an error; overall_accuracy: all rows, an
    out-of-scope row is correct when rejected; oos_auroc and fpr_at_95_tpr from the
    novelty scores.

    [bold]Example[/]

      embedlab evaluate model/ test.csv --json
    """
    from embedlab.pipeline import Pipeline

    with _user_errors():
        pipe = Pipeline.load(model_dir, cache=cache, backend=backend)
        table = _read_texts(
            data,
            text_col=text_col,
            label_col=label_col,
            splits=split,
            require_labels=True,
            skip_empty=skip_empty,
            delimiter=delimiter,
        )
        metrics = pipe.evaluate(table.texts, table.labels)
        if as_json:
            print(json.dumps(metrics))
            return
        _print_metrics(metrics, title=f"{model_dir} on {data}")


def _print_metrics(metrics: dict, title: str) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    for key, value in metrics.items():
        if isinstance(value, float):
            shown = f"{value:.2f} s" if key == "seconds" else f"{value:.4f}"
        else:
            shown = "n/a" if value is None else str(value)
        table.add_row(key, shown)
    console.print(table)


@app.command()
def index(
    space: Annotated[
        Path, typer.Argument(help="An EmbeddingSet directory (from `embedlab encode`).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the index to.")
    ],
    spec: Annotated[
        str,
        typer.Option(
            help="flat, sq8, pqM[xB], hnswM, ivfN,pqM[xB], binary,rescoreR or dimD,rerankR."
        ),
    ] = "flat",
    force: ForceOption = False,
) -> None:
    """Build a search index over an EmbeddingSet.

    [bold]Examples[/]

      embedlab index space/ -o index/                          (exact)

      embedlab index space/ -o index/ --spec binary,rescore10  (32x smaller, rescored)

      embedlab index space/ -o index/ --spec ivf256,pq16       (FAISS IVF-PQ)
    """
    from embedlab.index import Index
    from embedlab.space import EmbeddingSet

    with _user_errors():
        _check_output_dir(output, force, space)
        es = EmbeddingSet.load(space)
        t0 = time.perf_counter()
        idx = Index(spec, es.dim, encoder=es.provenance.encoder).add(es.vectors, ids=es.ids)
        idx.save(output, overwrite=force, rows=es.rows_table())
        console.print(
            f"wrote {output}: {spec} index of {len(idx)} × {es.dim} vectors, "
            f"{idx.bytes_per_vector():g} bytes/vector, built in {time.perf_counter() - t0:.1f} s"
        )


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="An index made by `embedlab index`.")],
    query: Annotated[str | None, typer.Argument(help="The query text (or give --vectors).")] = None,
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    vectors: Annotated[
        Path | None,
        typer.Option(
            help="Query vectors instead of a text: a .npy (n, d) array, one search per row; "
            "for indexes of imported vectors, which have no encoder."
        ),
    ] = None,
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Find the stored items closest to a query text (encoded with the index's own encoder)
    or to query vectors.

    [bold]Examples[/]

      embedlab search index/ "book me a flight to rome" -k 5

      embedlab search clip-index/ --vectors queries.npy -k 10 --json
    """
    from embedlab.index import Index

    with _user_errors():
        if (query is None) == (vectors is None):
            raise EmbedlabError("give a query text or --vectors FILE.npy (one of the two)")
        idx = Index.load(index_dir)
        if vectors is not None:
            from embedlab.space import EmbeddingSet

            q = EmbeddingSet.from_file(vectors).vectors
            ids, scores = idx.search(q, k)
            labels = [f"row {i + 1} of {vectors.name}" for i in range(len(q))]
        else:
            from embedlab.encoders.sentence_transformer import encoder_from_spec

            encoder = encoder_from_spec(idx.encoder, backend=backend)
            ids, scores = idx.search(encoder.encode([query]), k, encoder=encoder.spec)
            labels = [query]
        rows = {}
        if idx.rows is not None:
            rows = {r["id"]: r for r in idx.rows.to_pylist()}
        for q_i, shown_query in enumerate(labels):
            results = [
                {
                    **({"query": q_i + 1} if vectors is not None else {}),
                    "rank": r + 1,
                    "id": i,
                    "score": float(s),
                    **{c: v for c, v in rows.get(i, {}).items() if c in ("label", "text")},
                }
                for r, (i, s) in enumerate(zip(ids[q_i], scores[q_i], strict=True))
                if i != ""
            ]
            if as_json:
                for res in results:
                    print(json.dumps(res, ensure_ascii=False))
                continue
            short = shown_query if len(shown_query) <= 80 else shown_query[:77] + "..."
            table = Table(title=f"{short!r} in {index_dir}", title_justify="left")
            for col in ("rank", "score", "id", "label", "text"):
                table.add_column(col)
            for res in results:
                table.add_row(
                    str(res["rank"]),
                    f"{res['score']:.3f}",
                    res["id"],
                    str(res.get("label", "")),
                    str(res.get("text", "")),
                )
            console.print(table)


@app.command("diagnose")
def diagnose_space(
    space: Annotated[
        Path, typer.Argument(help="An EmbeddingSet directory (from `embedlab encode`).")
    ],
    sample: Annotated[
        int, typer.Option(help="Rows for the quadratic measures (silhouette; 2x for kNN).")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the samples.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
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
    """
    from embedlab.diagnose import diagnose
    from embedlab.space import EmbeddingSet

    with _user_errors():
        es = EmbeddingSet.load(space)
        report = diagnose(es, sample=sample, seed=seed)
        if as_json:
            typer.echo(json.dumps(report, default=float))
            return
        from rich.table import Table

        table = Table(title=f"{space}: {report['n']} × {report['dim']}")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_column("note")
        notes = {
            "rankme": "effective rank (of the dimension)",
            "uniformity": "log E exp(-2|x-y|^2); lower = more uniform",
            "alignment": "E|x - x+|^2 within labels; lower = tighter",
            "fisher_ratio": "between / within class scatter; higher = separable",
            "silhouette": "cosine; 1 = perfectly separated",
            "nc1": "within-class collapse; 0 = collapsed",
        }
        for key in ("rankme", "uniformity", "alignment", "fisher_ratio", "silhouette", "nc1"):
            if key in report:
                v = report[key]
                value = v["value"] if isinstance(v, dict) else v
                table.add_row(key, f"{value:.4g}", notes[key])
        iso = report["isotropy"]
        table.add_row(
            "isotropy", f"{iso['partition_ratio']:.3g}", f"mean cosine {iso['mean_cosine']:.3f}"
        )
        console.print(table)
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
                        f"row {r['row']} ({es.ids[r['row']]}) labelled {r['label']}, "
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


@app.command()
def report(
    source: Annotated[
        Path,
        typer.Argument(help="A model bundle (from `embedlab fit`) or an EmbeddingSet directory."),
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
    text_col: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the labels.")] = "label",
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    max_points: Annotated[int, typer.Option(help="Points drawn on the map at most.")] = 3000,
    skip_empty: SkipEmptyOption = False,
    force: ForceOption = False,
) -> None:
    """Write one self-contained HTML report (works offline: no scripts, no CDN).

    With a model and labelled data: headline metrics, confusion hot spots, per-class
    accuracy, in-scope vs out-of-scope score histograms with the threshold, ROC curve,
    diagnostics and a map of the embeddings. With an EmbeddingSet: diagnostics and the map.

    [bold]Examples[/]

      embedlab report model/ test.csv -o report.html

      embedlab report model/ ../shared/data/clinc150/data_full.json --split test --split oos_test

      embedlab report space/ -o space.html --plan embedlab-plan/
    """
    from embedlab.report import model_report, space_report, write_report

    with _user_errors():
        _check_output_file(output, force, source, data, plan_dir)
        t0 = time.perf_counter()
        if (source / "bundle.json").is_file():
            from embedlab.pipeline import Pipeline

            if data is None:
                raise typer.BadParameter("a model report needs DATA with labels to evaluate on")
            pipe = Pipeline.load(source)
            table = _read_texts(
                data,
                text_col=text_col,
                label_col=label_col,
                splits=split,
                require_labels=True,
                skip_empty=skip_empty,
            )
            html = model_report(
                pipe,
                table.texts,
                table.labels,
                title=f"embedlab report: {source.name} on {data.name}",
                plan=plan_dir,
                max_points=max_points,
            )
        else:
            from embedlab.space import EmbeddingSet

            es = EmbeddingSet.load(source)
            html = space_report(
                es, title=f"embedlab report: {source.name}", plan=plan_dir, max_points=max_points
            )
        path = write_report(html, output)
        console.print(
            f"wrote {path} ({len(html.encode()) / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s"
        )


def _int_list(value: str | None, what: str) -> list[int] | None:
    from embedlab.errors import ValidationError

    if value is None or not value.strip():
        return None
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise ValidationError(f"--{what} takes comma-separated integers, not {value!r}") from None


@app.command()
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
    text_col: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the labels.")] = "label",
    oos_label: Annotated[str, typer.Option(help="Label of out-of-scope rows.")] = "oos",
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    first_col: Annotated[str, typer.Option(help="sts: first sentence column.")] = "sentence1",
    second_col: Annotated[str, typer.Option(help="sts: second sentence column.")] = "sentence2",
    score_col: Annotated[str, typer.Option(help="sts: gold score column.")] = "score",
    model: Annotated[
        Path | None,
        typer.Option(help="Local sentence-transformers model directory (default: packaged)."),
    ] = None,
    backend: BackendOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write plan.png.")] = True,
    skip_empty: SkipEmptyOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
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

      embedlab plan ../shared/data/clinc150/data_full.json --max-bytes 128 --max-ms 2

      embedlab plan faq.jsonl --task retrieve --text-col question --label-col answer_id

      embedlab plan ../shared/data/stsb/sts-dev.csv --task sts --dims 384,128,64
    """
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.planner import plan as make_plan
    from embedlab.readers import read_pairs

    with _user_errors():
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
            table = _read_texts(
                data,
                text_col=text_col,
                label_col=label_col,
                splits=split,
                require_labels=True,
                skip_empty=skip_empty,
            )
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
        )
        paths = result.save(output, plot=plot)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), default=float))
        else:
            _print_plan(result, paths)
        if result.recommended is None:
            raise typer.Exit(1)


def _print_plan(result, paths: dict) -> None:
    from rich.table import Table

    ref = result.reference
    table = Table(
        title=f"Pareto front — {result.task}, ranked by {result.metric} "
        f"(reference: layer {ref.layer}, dim {ref.dim}, float32 = {ref.quality:.4f})"
    )
    for col in ("layer", "dim", "storage", "bytes", "× smaller", result.metric, "kept", "ms/item"):
        table.add_column(col, justify="left" if col == "storage" else "right", no_wrap=True)
    extra = [m for m in (result.rows[0].metrics if result.rows else {}) if m != result.metric]
    for m in extra:
        table.add_column(m, justify="right")
    front = sorted((r for r in result.rows if r.pareto), key=lambda r: r.bytes_per_vector)
    rec = result.recommended
    for r in front:
        style = "bold green" if r is rec else None
        table.add_row(
            str(r.layer),
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
    # Piped output has no terminal width: do not cut the headers at 80 columns.
    console.print(table, width=None if console.is_terminal else 10_000)
    for note in result.data.get("notes", []):
        console.print(f"note: {note}")
    if rec is None:
        console.print(
            "[bold red]no configuration meets the limits[/] "
            f"(--max-bytes {result.max_bytes}, --max-ms {result.max_ms}); "
            "the measured grid is in the CSV"
        )
    else:
        how = (
            f"embedlab encode DATA -o space/ --layer {rec.layer} --dim {rec.dim} && "
            f"embedlab index space/ -o index/ --spec {rec.index}"
            if result.task == "retrieve"
            else f"embedlab fit DATA -o model/ --transform {rec.transform}"
            if result.task == "classify"
            else f"embedlab encode DATA -o space/ --layer {rec.layer} --dim {rec.dim}"
        )
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


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the demo's outputs.")
    ] = Path("embedlab-demo"),
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse cached vectors.")] = True,
) -> None:
    """Run the main job on the packaged encoder and the packaged demo intents.

    Encodes the demo's train and test splits with all-MiniLM-L6-v2, saves both as
    EmbeddingSets and shows how the space separates intents and out-of-scope queries.

    [bold]Example[/]

      embedlab demo -o /tmp/embedlab-demo
    """
    from embedlab.demo import run_demo

    with _user_errors():
        run_demo(output, cache=cache, console=console)


def main() -> None:
    """Entry point of the ``embedlab`` script."""
    app()


if __name__ == "__main__":
    main()
