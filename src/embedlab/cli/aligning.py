"""`embedlab align` and `embedlab migrate`: change the encoder without relabelling or
re-encoding — a map between two encoders' spaces, then models and indexes moved through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from embedlab.cli.common import (
    BackendOption,
    DelimiterOption,
    ForceOption,
    SkipEmptyOption,
    TextColOption,
    app,
    check_output_dir,
    console,
    print_table,
    read_input_texts,
    user_errors,
)

PANEL = "Change the encoder: align, migrate"


def open_encoder_ref(
    ref: str, *, layer: int | None = None, dim: int | None = None, backend: str | None = None
) -> Any:
    """The encoder ``ref`` names: "default" (the packaged MiniLM), a student or a
    sentence-transformers directory, a model bundle (its encoder, adapted or not) or an
    EmbeddingSet (the encoder that made it)."""
    from embedlab.core.errors import EmbedlabError
    from embedlab.encoders.loading import open_encoder
    from embedlab.encoders.sentence_transformer import encoder_from_spec
    from embedlab.store.manifest import saved_kind

    if ref == "default":
        return open_encoder(None, layer=layer, dim=dim, backend=backend)
    path = Path(ref)
    if not path.exists():
        raise EmbedlabError(
            f"{ref}: no such encoder; give 'default', an encoder directory (a student or a "
            "sentence-transformers model), a model bundle or an EmbeddingSet"
        )
    kind = saved_kind(path)
    if kind in ("bundle", "embedding_set"):
        if layer is not None or dim is not None:
            raise EmbedlabError(
                f"{ref} is a {kind.replace('_', ' ')}: its encoder is fixed (no --layer / --dim)"
            )
        if kind == "bundle":
            from embedlab.store.bundle import read_bundle

            doc, _, _ = read_bundle(path)
            return encoder_from_spec(doc["encoder"], base_dir=path, backend=backend)
        from embedlab.data.sharded import ShardedSet

        return encoder_from_spec(ShardedSet(path).provenance.encoder, backend=backend)
    return open_encoder(path, layer=layer, dim=dim, backend=backend)


@app.command(rich_help_panel=PANEL)
def align(
    old: Annotated[
        str,
        typer.Argument(
            help="The encoder you have models and indexes for: 'default' (the packaged "
            "MiniLM), an encoder directory, a model bundle or an EmbeddingSet."
        ),
    ],
    new: Annotated[str, typer.Argument(help="The encoder to move to (the same kinds).")],
    texts: Annotated[
        Path,
        typer.Option(
            help="Calibration texts (CSV, TSV, JSONL, JSON, Parquet), encoded by both: texts "
            "like the ones your models see; 500 or more recommended."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the map.")],
    method: Annotated[
        str,
        typer.Option(
            help="auto (best held-out fidelity), procrustes (keeps angles; few texts), "
            "ridge (bends where the encoders differ; more texts), relative (cosines to "
            "anchor texts) or residual (identity plus a ridge correction; same dimension "
            "only: a student of OLD)."
        ),
    ] = "auto",
    calib: Annotated[
        int | None,
        typer.Option(help="Use at most this many texts (a seeded sample of --texts)."),
    ] = None,
    label_col: Annotated[
        str | None,
        typer.Option(help="A label column of --texts: fidelity is then also shown per class."),
    ] = None,
    old_layer: Annotated[int | None, typer.Option(help="OLD's layer (a layer cut).")] = None,
    old_dim: Annotated[int | None, typer.Option(help="OLD's output dimensions.")] = None,
    new_layer: Annotated[int | None, typer.Option(help="NEW's layer (a layer cut).")] = None,
    new_dim: Annotated[int | None, typer.Option(help="NEW's output dimensions.")] = None,
    text_col: TextColOption = "text",
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample, folds and anchors.")] = 0,
    backend: BackendOption = None,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    force: ForceOption = False,
) -> None:
    """Fit a map between two encoders' spaces from calibration texts encoded by both.

    The map goes both ways (OLD → NEW moves models and indexes; NEW → OLD lets new
    queries search an old index). Its fidelity is measured on texts each fold of the map
    did not see (5-fold cross-fitting): mean cosine to the true vector, neighbour
    overlap@10 and match@1. OUTPUT holds map.json (encoders, method, fidelity) and
    map.safetensors.

    [bold]Examples[/]

      embedlab align default student/ --texts my_texts.csv -o map/

      embedlab align model/ default --new-layer 3 --texts calib.csv -o map/ --label-col intent

      embedlab migrate model/ --map map/ -o model-v2/
    """
    import numpy as np

    from embedlab.align import align as run

    with user_errors():
        check_output_dir(output, force, texts)
        table = read_input_texts(
            texts,
            text_col=text_col,
            label_col=label_col,
            splits=split,
            skip_empty=skip_empty,
            delimiter=delimiter,
        )
        corpus, labels = list(table.texts), table.labels
        if calib is not None and calib < len(corpus):
            keep = np.sort(np.random.default_rng(seed).choice(len(corpus), calib, replace=False))
            corpus = [corpus[i] for i in keep]
            labels = None if labels is None else [labels[i] for i in keep]
        enc_old = open_encoder_ref(old, layer=old_layer, dim=old_dim, backend=backend)
        enc_new = open_encoder_ref(new, layer=new_layer, dim=new_dim, backend=backend)
        result = run(enc_old, enc_new, corpus, method=method, labels=labels, seed=seed)
        result.save(output, overwrite=force)
        fid = result.info["fidelity"]
        console.print(
            f"aligned {result.dim_old}-d → {result.dim_new}-d on {len(corpus)} texts with "
            f"{result.method}: held-out cosine {fid['forward']['mean_cosine']:.3f} forward, "
            f"{fid['backward']['mean_cosine']:.3f} backward; neighbour overlap@10 "
            f"{fid['forward']['neighbour_overlap@10']:.3f}"
        )
        _show(result, output)


def _show(alignment: Any, where: Path) -> None:
    from rich.table import Table

    info = alignment.info
    table = Table(title=f"map {where}", title_justify="left")
    for col in ("direction", "mean cosine", "p05 cosine", "overlap@10", "match@1"):
        table.add_column(col)
    for way in ("forward", "backward"):
        f = info["fidelity"][way]
        table.add_row(
            "old → new" if way == "forward" else "new → old",
            f"{f['mean_cosine']:.4f}",
            f"{f['p05_cosine']:.4f}",
            f"{f['neighbour_overlap@10']:.4f}",
            f"{f['match@1']:.4f}",
        )
    print_table(table)
    if info.get("methods_tried"):
        tried = ", ".join(f"{m} {v['mean_cosine']:.4f}" for m, v in info["methods_tried"].items())
        console.print(f"methods (held-out cosine, old → new): {tried}")
    per = info.get("per_class")
    if per:
        weak = Table(title="classes the map moves most (re-check their labels)")
        for col in ("class", "rows", "overlap@10", "mean cosine"):
            weak.add_column(col)
        for c in per["weakest"]:
            row = per["classes"][c]
            weak.add_row(
                c,
                str(row["rows"]),
                f"{row['neighbour_overlap@10']:.3f}",
                f"{row['mean_cosine']:.3f}",
            )
        print_table(weak)


@app.command(rich_help_panel=PANEL)
def migrate(
    source: Annotated[Path, typer.Argument(help="A model bundle or an index to move.")],
    map_dir: Annotated[
        Path, typer.Option("--map", help="A map made by `embedlab align` (OLD = source's).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where the moved model or index goes.")
    ],
    vectors: Annotated[
        Path | None,
        typer.Option(
            "--set",
            help="Index only: the EmbeddingSet it was built from, for index kinds that keep "
            "compressed codes only (sq8, pq, ivf-pq) or a transform.",
        ),
    ] = None,
    backend: BackendOption = None,
    force: ForceOption = False,
) -> None:
    """Move a model or an index to the map's new encoder, without the texts.

    A model: its kept training rows are mapped, its head and detector (the same kinds)
    refitted on them, its out-of-scope threshold recalibrated on the mapped held-out rows;
    its lineage records the migration, and it runs on the new encoder alone. An index: its
    stored vectors are mapped into a new index of the same kind and ids.

    [bold]Examples[/]

      embedlab migrate model/ --map map/ -o model-v2/

      embedlab migrate index/ --map map/ -o index-v2/

      embedlab migrate ivfpq-index/ --map map/ --set space/ -o index-v2/
    """
    from embedlab.align import Alignment, migrate_index, migrate_model
    from embedlab.core.errors import EmbedlabError
    from embedlab.store.manifest import saved_kind

    with user_errors():
        check_output_dir(output, force, source, map_dir)
        alignment = Alignment.load(map_dir)
        kind = saved_kind(source)
        if kind == "bundle":
            if vectors is not None:
                raise EmbedlabError("--set is for indexes; a model maps its own kept rows")
            from embedlab.models.pipeline import Pipeline

            pipe = Pipeline.load(source, backend=backend)
            alignment.check_old(pipe.encoder_.spec, str(source))
            moved = migrate_model(pipe, alignment, alignment.new_encoder(backend=backend))
            moved.save(output, overwrite=force)
            lineage = moved.info["lineage"]
            console.print(
                f"migrated {source} → {output} (version {lineage['version']}, "
                f"{alignment.method} map on {alignment.info.get('calibration_texts')} texts); "
                f"threshold {_threshold(moved)}"
            )
        elif kind == "index":
            from embedlab.compress.index import Index

            index = Index.load(source)
            moved = migrate_index(index, alignment, vectors=vectors, progress=True)
            moved.save(output, overwrite=force, rows=index.rows)
            console.print(
                f"migrated index {source} ({len(moved)} vectors, {index.spec}) → {output}"
            )
        else:
            raise EmbedlabError(
                f"{source} is neither a model bundle nor an index (nothing to migrate)"
            )


def _threshold(pipe: Any) -> str:
    t = pipe.info.get("threshold")
    if t is None and pipe.info.get("thresholds"):
        return f"{len(pipe.info['thresholds'])} per-label thresholds recalibrated"
    return "none (nothing rejected)" if t is None else f"{float(t):.4f} recalibrated"


def show_map(path: Path, as_json: bool) -> None:
    """`embedlab info MAP`: the map's encoders, method, fidelity and weakest classes."""
    from embedlab.align import Alignment

    alignment = Alignment.load(path)
    if as_json:
        print(
            json.dumps(
                {
                    "old": alignment.old,
                    "new": alignment.new,
                    "dims": [alignment.dim_old, alignment.dim_new],
                    **alignment.info,
                },
                indent=2,
            )
        )
        return
    console.print(
        f"{alignment.method} map, {alignment.dim_old}-d → {alignment.dim_new}-d, "
        f"{alignment.info.get('calibration_texts')} calibration texts"
    )
    _show(alignment, path)
