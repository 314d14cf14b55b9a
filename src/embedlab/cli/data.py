"""`embedlab encode`, `import` and `info`: data files and vectors in, EmbeddingSets out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedlab.cli.common import (
    BackendOption,
    DelimiterOption,
    ForceOption,
    ModelOption,
    SkipEmptyOption,
    TextColOption,
    app,
    check_output_dir,
    console,
    rate,
    read_input_texts,
    user_errors,
)


@app.command(rich_help_panel="Data: encode, import, inspect")
def encode(
    data: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL, JSON or Parquet file of texts.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the EmbeddingSet to.")
    ],
    text_col: TextColOption = "text",
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
    model: ModelOption = None,
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

    with user_errors():
        check_output_dir(output, force, data, model)
        table = read_input_texts(
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
            timing += f"; {rate(st['encoded'] / max(secs, 1e-9))} texts/s overall"
            if setup >= 0.5 and st["texts_per_second"]:
                timing += f", {rate(st['texts_per_second'])}/s once ready"
        console.print(
            f"wrote {output}: {es.n} × {es.dim} float32 from {encoder.name} "
            f"({st['encoded']} encoded, {st['cached']} from cache; {timing}; "
            f"backend {encoder.resolved_backend})"
        )


@app.command("import", rich_help_panel="Data: encode, import, inspect")
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
    from embedlab.embedding_set import EmbeddingSet

    with user_errors():
        check_output_dir(output, force, vectors)
        es = EmbeddingSet.from_file(
            vectors, vector_col=vector_col, id_col=id_col, label_col=label_col
        )
        es.save(output, overwrite=force)
        console.print(f"wrote {output}: {es.n} × {es.dim} float32")


@app.command(rich_help_panel="Data: encode, import, inspect")
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
    from embedlab.embedding_set import EmbeddingSet, describe

    with user_errors():
        es = EmbeddingSet.load(space, verify=verify)
        if as_json:
            print(json.dumps(describe(space, es), indent=2))
            return
        prov = es.provenance
        counts = es.label_counts()
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
