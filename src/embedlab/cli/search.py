"""`embedlab index` and `search`: ANN indexes over EmbeddingSets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedlab.cli.common import (
    BackendOption,
    ForceOption,
    app,
    check_output_dir,
    console,
    print_table,
    user_errors,
)
from embedlab.core.errors import EmbedlabError


@app.command(rich_help_panel="Search")
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
    train_rows: Annotated[
        int,
        typer.Option(
            help="Rows drawn from the set (evenly from every shard, seeded) to train a "
            "quantiser (sq8, pq, ivf-pq)."
        ),
    ] = 100_000,
    force: ForceOption = False,
) -> None:
    """Build a search index over an EmbeddingSet (sharded or not: added shard by shard).

    [bold]Examples[/]

      embedlab index space/ -o index/                          (exact)

      embedlab index space/ -o index/ --spec binary,rescore10  (32x smaller, rescored)

      embedlab index space/ -o index/ --spec ivf256,pq16       (FAISS IVF-PQ)
    """
    from embedlab.compress.index import Index

    with user_errors():
        check_output_dir(output, force, space)
        if train_rows < 1:
            raise EmbedlabError(f"--train-rows must be at least 1, got {train_rows}")
        t0 = time.perf_counter()
        idx, rows = Index.from_set(space, spec, train_rows=train_rows)
        idx.save(output, overwrite=force, rows=rows)
        console.print(
            f"wrote {output}: {spec} index of {len(idx)} × {idx.dim} vectors, "
            f"{idx.bytes_per_vector():g} bytes/vector, built in {time.perf_counter() - t0:.1f} s"
        )


@app.command(rich_help_panel="Search")
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
    query_map: Annotated[
        Path | None,
        typer.Option(
            help="A map made by `embedlab align OLD NEW` where OLD is the index's encoder: the "
            "query is encoded with NEW and mapped back into the index's space (moved to a "
            "new encoder, the index need not be rebuilt)."
        ),
    ] = None,
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Find the stored items closest to a query text (encoded with the index's own encoder,
    or with a new one through --query-map) or to query vectors.

    [bold]Examples[/]

      embedlab search index/ "book me a flight to rome" -k 5

      embedlab search clip-index/ --vectors queries.npy -k 10 --json

      embedlab search index/ "book me a flight" --query-map map/
    """
    from embedlab.compress.index import Index

    with user_errors():
        if (query is None) == (vectors is None):
            raise EmbedlabError("give a query text or --vectors FILE.npy (one of the two)")
        idx = Index.load(index_dir)
        if query_map is not None and query is None:
            raise EmbedlabError("--query-map maps query texts; query vectors are searched as given")
        if query_map is not None:
            from embedlab.align import Alignment

            alignment = Alignment.load(query_map)
            alignment.check_old(idx.encoder, str(index_dir))
            encoder = alignment.new_encoder(backend=backend)
            q = alignment.backward(encoder.encode([query]))
            ids, scores = idx.search(q, k, encoder=alignment.old)
            labels = [query]
        elif vectors is not None:
            from embedlab.data.embedding_set import EmbeddingSet

            q = EmbeddingSet.from_file(vectors).vectors
            ids, scores = idx.search(q, k)
            labels = [f"row {i + 1} of {vectors.name}" for i in range(len(q))]
        else:
            from embedlab.encoders.sentence_transformer import encoder_from_spec

            encoder = encoder_from_spec(idx.encoder, backend=backend)
            ids, scores = idx.search(encoder.encode([query]), k, encoder=encoder.spec)
            labels = [query]
        for q_i, (shown_query, results) in enumerate(
            zip(labels, idx.hits(ids, scores), strict=True)
        ):
            if vectors is not None:
                results = [{"query": q_i + 1, **res} for res in results]
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
            print_table(table)
