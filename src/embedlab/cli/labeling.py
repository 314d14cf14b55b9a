"""`embedlab suggest` and `simulate-labeling`: which texts to label next, and what each
way of choosing would have bought."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from embedlab.cli.common import (
    BackendOption,
    DelimiterOption,
    ForceOption,
    LabelColOption,
    SkipEmptyOption,
    TextColOption,
    app,
    check_output_dir,
    check_output_file,
    console,
    read_input_texts,
    read_labelled,
    user_errors,
)

PANEL = "Labels: what to label, what is wrong"


@app.command(rich_help_panel=PANEL)
def suggest(
    pool: Annotated[
        Path,
        typer.Argument(
            help="Unlabelled texts (CSV, JSONL, Parquet...) or an EmbeddingSet directory "
            "(`embedlab encode`; sharded sets are streamed)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the rows to label (CSV...).")
    ] = Path("to_label.csv"),
    n: Annotated[int, typer.Option("-n", help="How many rows to suggest.")] = 200,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="A fitted model: adds its uncertainty and novelty."),
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            help="auto (typiclust without a model or below 4 labels per class, else margin), "
            "typiclust, margin, coreset or random."
        ),
    ] = "auto",
    labeled: Annotated[
        Path | None,
        typer.Option(
            help="Rows labelled already (a file with an 'id' column matching the pool's ids, "
            "or a text column): never suggested, and their regions count as covered."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed, the same suggestions.")] = 0,
    sample: Annotated[
        int, typer.Option(help="Pools larger than this are streamed (clusters from a sample).")
    ] = 20_000,
    text_col: TextColOption = "text",
    label_col: Annotated[
        str,
        typer.Option(help="A pool file's label column: its filled rows count as labelled."),
    ] = "label",
    id_col: Annotated[str | None, typer.Option(help="The pool file's id column.")] = None,
    backend: BackendOption = None,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    force: ForceOption = False,
) -> None:
    """Which rows of POOL to label next, best first, each with why: a new region, ambiguous
    between two classes, or unlike any class.

    Without a model (a cold start): one row near the centre of each of the largest
    clusters that hold no labels yet (TypiClust-style). With -m MODEL: the rows the model
    is least sure of (smallest margin between its two best classes; a fifth of the picks
    among the rows least like any class), spread over clusters so that picks do not repeat.
    The model's training rows and --labeled count as labelled. Output columns: rank, id,
    text, reason, score, strategy, predicted (with a model), pool_row.

    [bold]Examples[/]

      embedlab suggest unlabelled.csv -n 150 -o to_label.csv

      embedlab suggest unlabelled.csv -m model/ -n 200 --labeled done.csv

      embedlab suggest pool-vectors/ -m model/ -n 500   # a sharded set, streamed
    """
    from embedlab.labeling.suggest import suggest as run
    from embedlab.store.manifest import saved_kind

    with user_errors():
        check_output_file(output, force, pool, labeled)
        pipe = _load_model(model, backend)
        if saved_kind(pool) == "embedding_set":
            source: Any = pool
            pool_texts, done = None, []
        else:
            source, pool_texts, done = _encode_pool(
                pool, pipe, backend,
                text_col=text_col, label_col=label_col, id_col=id_col,
                skip_empty=skip_empty, delimiter=delimiter,
            )  # fmt: skip
        ids, vectors = _labelled(labeled, pool_texts, source, pipe, backend, text_col, delimiter)
        ids = done + ids
        found = run(
            source, n, model=pipe, strategy=strategy, labeled=ids,
            labeled_vectors=vectors, seed=seed, sample=sample, progress=None,
        )  # fmt: skip
        from embedlab.data.readers import write_table

        write_table(found.to_table(), output)
        for note in found.notes:
            console.print(f"[dim]{note}[/]")
        console.print(f"wrote {len(found)} rows to label to {output} (strategy {found.strategy})")
        for row in found.to_rows()[:5]:
            text = str(row.get("text", row["id"]))[:60]
            console.print(f"  {row['rank']:>3}. {text!r}: {row['reason']}")


def _load_model(model: Path | None, backend: str | None) -> Any:
    if model is None:
        return None
    from embedlab.models.pipeline import Pipeline

    return Pipeline.load(model, backend=backend)


def _encoder(pipe: Any, backend: str | None) -> Any:
    if pipe is not None:
        return pipe.encoder_
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

    return SentenceTransformerEncoder(backend=backend) if backend else SentenceTransformerEncoder()


def _encode_pool(
    pool: Path, pipe: Any, backend: str | None, **read: Any
) -> tuple[Any, list[str], list[str]]:
    """A text file → (an in-memory EmbeddingSet — the model's encoder, else the packaged
    default —, its texts, the ids of rows with a label in ``label_col``: labelled)."""
    import numpy as np

    from embedlab.data.embedding_set import EmbeddingSet, Provenance

    label_col = read.pop("label_col")
    table = read_input_texts(pool, label_col=None, **read)
    enc = _encoder(pipe, backend)
    X = enc.encode(table.texts, progress=None)
    es = EmbeddingSet(
        X, ids=table.ids, texts=table.texts,
        provenance=Provenance(encoder=enc.spec, dim=X.shape[1], source=str(pool)),
    )  # fmt: skip
    done: list[str] = []
    if table.table is not None and label_col in table.table.column_names:
        from embedlab.data.readers import is_missing_value

        raw = table.table.column(label_col).to_pylist()
        skipped = set(table.skipped_rows)
        keep = [i for i in range(len(raw)) if i not in skipped]
        filled = np.array([not is_missing_value(raw[i]) for i in keep], dtype=bool)
        done = [table.ids[i] for i in np.flatnonzero(filled)]
    return es, table.texts, done


def _labelled(
    labeled: Path | None,
    pool_texts: Any,
    source: Any,
    pipe: Any,
    backend: str | None,
    text_col: str,
    delimiter: str | None,
) -> tuple[list[str], Any]:
    """(ids of pool rows labelled already, vectors of labelled texts outside the pool)."""
    import numpy as np

    ids: list[str] = []
    if labeled is None:
        return ids, None
    from embedlab.core.errors import ValidationError
    from embedlab.data.readers import read_table

    table = read_table(labeled, delimiter=delimiter)
    if "id" in table.column_names:
        return ids + [str(v) for v in table.column("id").to_pylist()], None
    if text_col not in table.column_names:
        raise ValidationError(
            f"{labeled}: neither an 'id' column nor a {text_col!r} column "
            f"(columns: {table.column_names})"
        )
    done = [str(t) for t in table.column(text_col).to_pylist() if t]
    if pool_texts is not None:
        where = {t: i for i, t in enumerate(pool_texts)}
        inside = [where[t] for t in done if t in where]
        ids += [str(np.asarray(source.ids)[i]) for i in inside]
        done = [t for t in done if t not in where]
    if not done:
        return ids, None
    return ids, _encoder(pipe, backend).encode(done, progress=None)


@app.command("simulate-labeling", rich_help_panel=PANEL)
def simulate_labeling(
    data: Annotated[Path, typer.Argument(help="A labelled pool (texts and labels).")],
    test: Annotated[Path, typer.Option("--test", help="Labelled texts to score each round on.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="A directory: curve.csv, curve.png.")
    ] = Path("curve"),
    budgets: Annotated[
        str, typer.Option(help="START:STOP:STEP (stop included) or a comma list.")
    ] = "150:3000:150",
    strategies: Annotated[
        str,
        typer.Option(
            help="Comma list of random, stratified (one per class first: a yardstick a user "
            "cannot follow without labels), typiclust, coreset, margin, auto."
        ),
    ] = "random,stratified,typiclust,margin,auto",
    seeds: Annotated[int, typer.Option(help="Seeds per strategy (mean ± sd plotted).")] = 3,
    head: Annotated[
        str, typer.Option(help="The head fitted at each budget (linear, prototype, ...).")
    ] = "linear",
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    backend: BackendOption = None,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    force: ForceOption = False,
) -> None:
    """Replay labelling on a labelled set: each strategy picks rows budget by budget (the
    labels are revealed only for the picked rows), a head is fitted on them and scored on
    TEST. Writes curve.csv (strategy, seed, budget, accuracy, macro_f1, classes_seen,
    select_s) and curve.png, and prints how many labels each strategy needs to reach 95 %
    of the accuracy of the whole pool.

    [bold]Examples[/]

      embedlab simulate-labeling train.csv --test test.csv --budgets 150:3000:150 -o curve/
    """
    import numpy as np
    import pyarrow as pa

    from embedlab.data.readers import write_table
    from embedlab.heads.registry import make_head
    from embedlab.labeling.simulate import (
        curve_means,
        labels_to_reach,
        parse_budgets,
        plot_curve,
    )
    from embedlab.labeling.simulate import simulate_labeling as run

    with user_errors():
        check_output_dir(output, force, data, test)
        b = parse_budgets(budgets)
        names = [s.strip() for s in strategies.split(",") if s.strip()]
        pool = read_labelled(data, text_col, label_col, None, skip_empty, delimiter)
        held = read_labelled(test, text_col, label_col, None, skip_empty, delimiter)
        enc = _encoder(None, backend)
        X = enc.encode(pool.texts, progress=None)
        Xt = enc.encode(held.texts, progress=None)
        points = run(
            X, pool.labels, Xt, held.labels, budgets=b, strategies=names,
            seeds=range(seeds), head=head, progress=True,
        )  # fmt: skip
        output.mkdir(parents=True, exist_ok=True)
        write_table(pa.Table.from_pylist(points), output / "curve.csv")
        plot_curve(points, output / "curve.png")
        from embedlab.core.vectors import unit_rows

        full = make_head(head).fit(unit_rows(X), pool.labels).predict(unit_rows(Xt))
        full_acc = float(np.mean(full == np.asarray(held.labels, dtype=object)))
        summary = {"full_pool_accuracy": full_acc, "labels_to_95pct": {}}
        for name, (bb, mean, sd) in curve_means(points).items():
            need = labels_to_reach(bb, mean, 0.95 * full_acc)
            summary["labels_to_95pct"][name] = need
            console.print(
                f"{name:>10}: {mean[0]:.3f} ± {sd[0]:.3f} at {bb[0]} labels, {mean[-1]:.3f} at "
                f"{bb[-1]}; 95 % of the whole pool's {full_acc:.3f} "
                + ("not reached" if need is None else f"at ~{need:.0f} labels")
            )
        (output / "summary.json").write_text(json.dumps(summary, indent=1))
        console.print(f"wrote {output}/curve.csv, curve.png, summary.json")
