"""`embedlab encode`, `import` and `info`: data files and vectors in, EmbeddingSets out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from embedlab.cli.common import (
    BackendOption,
    DelimiterOption,
    ForceOption,
    ModelOption,
    RayActorsOption,
    RayAddressOption,
    RayOption,
    SkipEmptyOption,
    TextColOption,
    app,
    check_output_dir,
    console,
    print_table,
    rate,
    ray_options,
    say_skipped,
    user_errors,
)
from embedlab.core.errors import EmbedlabError


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
    shard_rows: Annotated[
        int,
        typer.Option(
            help="Input rows per shard: the input is read, encoded and written one shard at a "
            "time (memory bounded by a shard); more rows than this give a sharded set."
        ),
    ] = 100_000,
    vector_format: Annotated[
        str,
        typer.Option(
            help="Where shards keep their vectors: npy (vectors.npy, memory-mapped) or parquet "
            "(a 'vector' column of fixed-size float32 lists in rows.parquet, for DuckDB / "
            "Spark / Arrow; always the sharded layout).",
        ),
    ] = "npy",
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Start over, discarding an unfinished earlier run for OUTPUT (by default a "
            "run with the same input and options resumes where it stopped; one with other "
            "input or options starts over by itself).",
        ),
    ] = False,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = 2,
    force: ForceOption = False,
) -> None:
    """Encode the texts of DATA into an EmbeddingSet directory.

    Row i of OUTPUT/vectors.npy is the vector of data row i; ids, labels, texts and any
    other columns go to OUTPUT/rows.parquet, and OUTPUT/manifest.json records the encoder.
    Inputs over --shard-rows rows are written as shards (OUTPUT/shards/00000/ ...) under one
    manifest. A run that was stopped (Ctrl-C, a crash, kill -9) resumes when started again:
    only the shards not yet written are encoded. With --ray the shards are encoded by a
    pool of Ray actors (same output; a run may resume on either).

    [bold]Examples[/]

      embedlab encode intents.csv -o space/

      embedlab encode tickets.jsonl -o space/ --text-col body --label-col queue

      embedlab encode ../shared/data/clinc150/data_full.json --split train -o clinc-train/

      embedlab encode intents.csv -o space-l4-d128/ --layer 4 --dim 128

      embedlab encode tickets.parquet -o space/ --vector-format parquet   (DuckDB-readable)
    """
    from embedlab.encoders.loading import open_encoder
    from embedlab.scale.encoding import encode_file_sharded

    with user_errors():
        check_output_dir(output, force, data, model)
        if shard_rows < 1:
            raise EmbedlabError(f"--shard-rows must be at least 1, got {shard_rows}")
        on_ray = ray_options(ray, ray_address, ray_actors)
        encoder = open_encoder(
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
        job = encode_file_sharded(
            data,
            output,
            encoder,
            shard_rows=shard_rows,
            text_col=text_col,
            label_col=label_col or "label",
            require_labels=label_col is not None,
            id_col=id_col,
            splits=split,
            on_empty="skip" if skip_empty else "error",
            delimiter=delimiter,
            keep_text=keep_text,
            overwrite=force,
            restart=restart,
            ray=on_ray,
            vector_format=vector_format,
        )
        secs = time.perf_counter() - t0
        say_skipped(job)
        timing = f"{secs:.1f} s in all"
        if job.load_seconds >= 0.5:
            timing += f", of which {job.load_seconds:.1f} s loading / preparing the model"
        if job.encoded:
            timing += f"; {rate(job.encoded / max(secs, 1e-9))} texts/s overall"
        shards = _shards(job.shards)
        if job.resumed:
            shards += f", {job.resumed} done by an earlier run"
        console.print(
            f"wrote {output}: {job.rows} × {encoder.dim} float32 from {encoder.name} "
            f"({job.encoded} encoded, {job.cached} from cache; {shards}; {timing}; "
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
    from embedlab.data.embedding_set import EmbeddingSet

    with user_errors():
        check_output_dir(output, force, vectors)
        es = EmbeddingSet.from_file(
            vectors, vector_col=vector_col, id_col=id_col, label_col=label_col
        )
        es.save(output, overwrite=force)
        console.print(f"wrote {output}: {es.n} × {es.dim} float32")


@app.command(rich_help_panel="Data: encode, import, inspect")
def info(
    space: Annotated[
        Path, typer.Argument(help="An EmbeddingSet directory, or a map made by `embedlab align`.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check file checksums.")
    ] = True,
) -> None:
    """Show an EmbeddingSet's shape, provenance and label counts (read from its manifest and
    label column, shard by shard: the vectors are only read to check their checksums); for
    a map, its encoders, method, held-out fidelity and the classes it moves most.

    [bold]Examples[/]

      embedlab info space/

      embedlab info map/
    """
    from embedlab.data.sharded import ShardedSet

    with user_errors():
        if (space / "map.json").is_file():
            from embedlab.cli.aligning import show_map

            show_map(space, as_json)
            return
        ss = ShardedSet(space)
        if verify:
            ss.verify()
        d = ss.info()
        if as_json:
            print(json.dumps(d, indent=2))
            return
        prov = ss.provenance
        counts = d["label_counts"]
        enc = prov.encoder or {}
        table = Table(show_header=False, title=f"EmbeddingSet {space}", title_justify="left")
        table.add_row("shape", f"{ss.n} × {ss.dim} float32")
        if len(ss.shards) > 1:
            table.add_row("shards", str(len(ss.shards)))
        if ss.vector_format == "parquet":
            table.add_row("vectors", "in rows.parquet (column 'vector', fixed-size float32 lists)")
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
        table.add_row("texts kept", "yes" if d["texts"] else "no")
        if d["metadata"]:
            table.add_row("metadata", ", ".join(d["metadata"]))
        if counts:
            shown = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:12])
            more = f" … ({len(counts)} labels)" if len(counts) > 12 else ""
            table.add_row("labels", shown + more)
        else:
            table.add_row("labels", "none")
        print_table(table)


@app.command("filter", rich_help_panel="Data: encode, import, inspect")
def filter_command(
    space: Annotated[Path, typer.Argument(help="An EmbeddingSet directory (sharded or not).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the new set to.")
    ],
    label: Annotated[
        list[str],
        typer.Option("--label", "-l", help="A label whose rows to keep (repeatable)."),
    ],
    exclude: Annotated[
        bool, typer.Option("--exclude", help="Keep every row except those labels' instead.")
    ] = False,
    force: ForceOption = False,
) -> None:
    """Write the rows of some labels (or all but them) to a new EmbeddingSet, shard by shard
    (memory bounded by a shard; vectors kept as the source keeps them).

    [bold]Examples[/]

      embedlab filter space/ -o alarms/ --label set_alarm --label weather_forecast

      embedlab filter space/ -o in-scope/ --label oos --exclude
    """
    from embedlab.data.sharded import ShardedSet, filter_set

    with user_errors():
        check_output_dir(output, force, space)
        filter_set(space, output, label, exclude=exclude, overwrite=force)
        _say_written(ShardedSet(output))


@app.command(rich_help_panel="Data: encode, import, inspect")
def concat(
    spaces: Annotated[
        list[Path], typer.Argument(help="EmbeddingSet directories, in the order wanted.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the joined set to.")
    ],
    force: ForceOption = False,
) -> None:
    """Join EmbeddingSets of the same encoder, dimension and columns into one, shard by shard
    (no set is loaded whole; row ids must not overlap).

    [bold]Example[/]

      embedlab concat january/ february/ march/ -o q1/
    """
    from embedlab.data.sharded import ShardedSet, concat_sets

    with user_errors():
        check_output_dir(output, force, *spaces)
        concat_sets(spaces, output, overwrite=force)
        _say_written(ShardedSet(output))


def _say_written(ss: Any) -> None:
    console.print(f"wrote {ss.path}: {ss.n} × {ss.dim} float32 ({_shards(len(ss.shards))})")


def _shards(n: int) -> str:
    return f"{n} shards" if n > 1 else "1 shard"
