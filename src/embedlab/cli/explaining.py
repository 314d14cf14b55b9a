"""`embedlab concepts`: a sparse dictionary of a space or a model's space, its atoms named
from the texts they fire on — what `predict --explain`, the service and the report use."""

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
    signing_key,
    user_errors,
)

PANEL = "Explain: concepts"


@app.command(rich_help_panel=PANEL)
def concepts(
    source: Annotated[
        Path,
        typer.Argument(
            help="An EmbeddingSet (`embedlab encode`: its vectors, texts and labels) or a "
            "model bundle (its space: the model's kept rows, or --texts)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="An EmbeddingSet: the directory for the concepts. A model: the new model "
            "(with its concepts stage).",
        ),
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="A model: write its next version in place.")
    ] = False,
    texts: Annotated[
        Path | None,
        typer.Option(
            help="A model: texts to learn and name the concepts from (CSV, JSONL, Parquet...; "
            "its training data is best). Without them the model's kept rows are used and "
            "concepts are named by their labels only."
        ),
    ] = None,
    atoms: Annotated[
        str,
        typer.Option(
            help="Atoms in the dictionary: 'auto' (one per 5 rows, 64–4096) or a number "
            "(at most one per 4 rows)."
        ),
    ] = "auto",
    k: Annotated[int, typer.Option("--k", help="Active atoms per text.")] = 16,
    method: Annotated[
        str,
        typer.Option(
            help="topk-sae (a top-k sparse autoencoder, trained) or omp (matching pursuit "
            "over a k-means dictionary)."
        ),
    ] = "topk-sae",
    epochs: Annotated[int, typer.Option(help="Training passes (topk-sae).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed: the same seed, the same concepts.")] = 0,
    label_col: Annotated[
        str | None, typer.Option(help="--texts: a label column, for each concept's label mix.")
    ] = None,
    text_col: TextColOption = "text",
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Also write the concepts table here.")
    ] = None,
    show: Annotated[int, typer.Option(help="Concepts to print (the most frequent).")] = 15,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    backend: BackendOption = None,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    sign: Annotated[
        Path | None, typer.Option(help="A model: sign the new version with this key file.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Learn the concepts of a space: a sparse dictionary (each vector ≈ a bias plus K of
    ATOMS unit directions) named from the texts each atom fires on (its top words by
    class-based TF-IDF, its most typical texts, its majority label and purity).

    From an EmbeddingSet, OUTPUT holds concepts.json, dictionary.safetensors and
    concepts.csv. From a model, the concepts become a stage of the model (-o NEW or
    --in-place): `predict --explain`, `/v1/classify` with "explain": true and the report
    then say which concepts are behind each label and each novelty score.

    [bold]Examples[/]

      embedlab encode train.csv -o space/ && embedlab concepts space/ -o concepts/

      embedlab concepts model/ --texts train.csv --label-col label --in-place

      embedlab predict model/ new.csv --explain -o explained.csv
    """
    from embedlab.core.errors import ValidationError
    from embedlab.store.manifest import saved_kind

    with user_errors():
        n_atoms: Any = atoms if atoms == "auto" else _whole(atoms)
        options = dict(n_atoms=n_atoms, k=k, method=method, epochs=epochs, random_state=seed)
        kind = saved_kind(source)
        if kind == "embedding_set":
            if output is None or in_place:
                raise ValidationError("an EmbeddingSet's concepts go to a directory: -o DIR")
            check_output_dir(output, force, source)
            found = _from_set(source, options)
            found.save(output, overwrite=force)
            where = output
        elif kind == "bundle":
            found, where = _into_model(
                source, output, in_place, force, texts, options,
                text_col=text_col, label_col=label_col, backend=backend,
                skip_empty=skip_empty, delimiter=delimiter, sign=sign,
            )  # fmt: skip
        else:
            raise ValidationError(
                f"{source}: neither an EmbeddingSet nor a model bundle (make one with "
                "`embedlab encode` or `embedlab fit`)"
            )
        if csv_out is not None:
            from embedlab.concepts.naming import concepts_csv
            from embedlab.store.atomic import atomic_write_bytes

            atomic_write_bytes(csv_out, concepts_csv(found.concepts).encode("utf-8"))
        _report(found, where, show, json_out)


def _whole(text: str) -> int:
    from embedlab.core.errors import ValidationError

    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"--atoms takes 'auto' or a whole number, got {text!r}") from None


def _from_set(path: Path, options: dict[str, Any]) -> Any:
    from embedlab.concepts import fit_concepts
    from embedlab.data.embedding_set import EmbeddingSet

    es = EmbeddingSet.load(path)
    texts = None if es.texts is None else [str(t) for t in es.texts]
    labels = None if es.labels is None else [str(v) for v in es.labels]
    enc = es.provenance.encoder or {}
    return fit_concepts(
        es.vectors,
        texts,
        labels,
        space={"encoder": enc.get("fingerprint"), "dim": es.dim},
        ignore_labels=["oos"],
        **options,
    )


def _into_model(
    source: Path,
    output: Path | None,
    in_place: bool,
    force: bool,
    texts: Path | None,
    options: dict[str, Any],
    **kw: Any,
) -> tuple[Any, Path]:
    from embedlab.core.errors import ValidationError
    from embedlab.models.pipeline import Pipeline

    if in_place == (output is not None):
        raise ValidationError("a model's concepts need --output NEW_MODEL or --in-place")
    target = source if in_place else output
    if not in_place:
        check_output_dir(output, force, source, texts)
    key = signing_key(kw["sign"])
    pipe = Pipeline.load(source, backend=kw["backend"])
    corpus = labels = None
    if texts is not None:
        table = read_input_texts(
            texts,
            text_col=kw["text_col"],
            label_col=kw["label_col"],
            skip_empty=kw["skip_empty"],
            delimiter=kw["delimiter"],
        )
        corpus, labels = list(table.texts), table.labels
    new = pipe.fit_concepts(corpus, labels, **options)
    if in_place:
        new.save(target, overwrite=True, expect_stamp=pipe.source_stamp, sign=key)
    else:
        new.save(target, overwrite=force, sign=key)
    return new.concepts_, target


def _report(found: Any, where: Path, show: int, as_json: bool) -> None:
    from rich.table import Table

    d = found.dictionary
    summary = {
        "atoms": d.n_atoms,
        "k": d.k,
        "method": d.method,
        "rows": found.fitted_on.get("rows"),
        "dead_atoms": len(d.dead_atoms()),
        "output": str(where),
    }
    pur = [c.purity for c in found.concepts if c.purity is not None]
    if pur:
        summary["purity_share_ge_0_5"] = round(sum(p >= 0.5 for p in pur) / len(pur), 4)
    order = sorted(found.concepts, key=lambda c: -c.frequency)[:show]
    if as_json:
        summary["concepts"] = [c.to_json() for c in order]
        print(json.dumps(summary))
        return
    console.print(
        f"learnt {d.n_atoms} concepts (k={d.k}, {d.method}) on {summary['rows']} rows: "
        f"{summary['dead_atoms']} never active"
        + (f"; {summary['purity_share_ge_0_5']:.0%} of labelled ones ≥ 0.5 pure" if pur else "")
        + f" → {where}"
    )
    table = Table(title="the most frequent concepts", title_justify="left")
    for col in ("id", "name", "frequency", "label (purity)", "a typical text"):
        table.add_column(col)
    for c in order:
        lab = "" if c.label is None else f"{c.label} ({c.purity:.2f})"
        table.add_row(
            str(c.id), c.name, f"{c.frequency:.3f}", lab, c.texts[0][:60] if c.texts else ""
        )
    print_table(table)
