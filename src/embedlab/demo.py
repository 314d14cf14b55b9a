"""The demo job: encode the packaged intent data with the packaged encoder and show the result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from embedlab.compress.index import Index
from embedlab.core.metrics import HEADLINE_METRICS
from embedlab.data.datasets import OOS_LABEL, load_demo
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.pipeline import Pipeline
from embedlab.scale.encoding import encode_table

__all__ = ["run_demo"]


def run_demo(
    out_dir: str | Path = "embedlab-demo", *, cache: bool = True, console: Console | None = None
) -> dict[str, Any]:
    """Encode the demo train and test splits, save both sets under ``out_dir``, print a tour.

    Returns the two EmbeddingSets by split name and the test metrics under "metrics".
    """
    console = console or Console()
    out_dir = Path(out_dir)
    encoder = SentenceTransformerEncoder(cache=cache)
    console.print(
        f"[bold]embedlab demo[/] — encoder {encoder.name} (dim {encoder.dim}), "
        f"model files at {encoder.model_path}"
    )
    tables = {split: load_demo(split) for split in ("train", "test")}
    sets = _encode_sets(tables, encoder, out_dir, console)
    _first_look(sets["train"], sets["test"], console)
    pipe, metrics = _fit_and_evaluate(tables, encoder, out_dir, console)
    _search(sets["train"], encoder, out_dir, console)
    sets["report"] = _stream_and_report(pipe, tables, out_dir, console)
    sets["label_set_change"] = _label_set_change(pipe, out_dir, console)
    sets["zero_shot"] = _zero_shot(encoder, tables, metrics, out_dir, console)
    model_dir = out_dir / "model"
    console.print(
        f"Next: [bold]embedlab predict {model_dir} my_texts.csv -o predictions.csv[/] "
        f'or [bold]embedlab search {out_dir / "index"} "your query"[/], or serve the models '
        f"over HTTP: [bold]embedlab serve {model_dir} {out_dir / 'model_zero_shot'} "
        f"{out_dir / 'index'}[/] (then open http://127.0.0.1:8000/ for the playground, or POST "
        "/v1/classify; see the README's Serving section). Millions of rows: [bold]embedlab "
        "encode big.parquet -o space/ --shard-rows 100000[/] (sharded, resumable; add --ray "
        "to run on Ray) — see the README's Large inputs section"
    )
    sets["metrics"] = metrics
    return sets


def _encode_sets(
    tables: dict[str, Any], encoder: Any, out_dir: Path, console: Console
) -> dict[str, Any]:
    """Each split encoded and saved as an EmbeddingSet, with what the encoder did."""
    sets: dict[str, Any] = {}
    for split, table in tables.items():
        t0 = time.perf_counter()
        es = encode_table(table, encoder)
        secs = time.perf_counter() - t0
        stats = encoder.last_stats
        path = es.save(out_dir / split, overwrite=True)
        load = (
            f", {stats['backend']} backend ready in {stats['load_seconds']:.1f} s"
            if stats["load_seconds"]
            else ""
        )
        rate = f" at {stats['texts_per_second']:,.0f} texts/s" if stats["encoded"] else ""
        console.print(
            f"  {split:5s}: {es.n} texts → {path}  ({stats['encoded']} encoded{rate}, "
            f"{stats['cached']} from cache{load}; {secs:.2f} s)"
        )
        sets[split] = es
    counts = sets["train"].label_counts()
    console.print(
        f"  {len(counts) - (OOS_LABEL in counts)} intents + {counts.get(OOS_LABEL, 0)} "
        f"out-of-scope ('{OOS_LABEL}') examples in train"
    )
    return sets


def _first_look(train: Any, test: Any, console: Console) -> None:
    """A first look at the space: each test query's nearest training example by cosine."""
    known = train.where_label(OOS_LABEL, exclude=True)
    sims = _unit(test.vectors) @ _unit(known.vectors).T
    best = sims.argmax(axis=1)
    top = sims[np.arange(test.n), best]
    table = Table(title="Nearest training example (cosine) for a few test queries")
    for col in ("query", "true label", "nearest example", "its label", "cosine"):
        table.add_column(col)
    rng = np.random.default_rng(0)
    in_scope = np.flatnonzero(test.labels != OOS_LABEL)
    oos = np.flatnonzero(test.labels == OOS_LABEL)
    show = np.concatenate(
        [rng.choice(in_scope, 4, replace=False), rng.choice(oos, 2, replace=False)]
    )
    for i in show:
        table.add_row(
            test.texts[i],
            test.labels[i],
            known.texts[best[i]],
            known.labels[best[i]],
            f"{top[i]:.2f}",
        )
    console.print(table)
    acc = float(np.mean(known.labels[best[in_scope]] == test.labels[in_scope]))
    console.print(
        f"  1-nearest-neighbour accuracy on in-scope test queries: {acc:.1%} "
        f"({in_scope.size} queries); mean best cosine in-scope {top[in_scope].mean():.2f} vs "
        f"out-of-scope {top[oos].mean():.2f}"
    )


def _fit_and_evaluate(
    tables: dict[str, Any], encoder: Any, out_dir: Path, console: Console
) -> tuple[Pipeline, dict[str, Any]]:
    """The main job: fit an open-set classifier on train, evaluate on test, save it."""
    t0 = time.perf_counter()
    # a 5 % rejection target: the ~34 rows train holds out can promise it at any size of
    # data (split conformal); 2 % would need 49 of them (the fit says so and rejects nothing)
    clf = OpenSetClassifier(target_fpr=0.05)
    pipe = Pipeline(encoder=encoder, classifier=clf).fit(
        tables["train"].texts, tables["train"].labels
    )
    fit_s = time.perf_counter() - t0
    model_dir = pipe.save(out_dir / "model", overwrite=True)
    info = pipe.info
    adapted = info.get("adapted")
    console.print(
        f"Fitted in {fit_s:.1f} s: head [bold]{info['head']}[/], detector "
        f"[bold]{info['detector']}[/] (chosen by class-holdout cross-validation on train), "
        + (
            f"encoder adapted for {adapted['steps']} steps ({adapted['seconds']:.0f} s)"
            if adapted
            else "encoder frozen"
        )
        + f", threshold at {clf.target_fpr:.0%} of in-scope inputs rejected"
        f" ({pipe.classifier_.calibration_method_}) → {model_dir}"
    )
    metrics = pipe.evaluate(tables["test"].texts, tables["test"].labels)
    results = Table(title="Test metrics (in-scope accuracy counts a rejection as an error)")
    results.add_column("metric")
    results.add_column("value", justify="right")
    for key in (*HEADLINE_METRICS, "seconds"):
        value = metrics[key]
        results.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(results)
    return pipe, metrics


def _search(train: Any, encoder: Any, out_dir: Path, console: Console) -> None:
    """Search: 32x smaller binary codes, rescored with the float vectors."""
    index = Index("binary,rescore10", train.dim, encoder=train.provenance.encoder)
    index.add(train.vectors, ids=train.ids)
    index_dir = index.save(out_dir / "index", overwrite=True, rows=train.rows_table())
    query = "I'd like to fly to Lisbon next week"
    ids, scores = index.search(encoder.encode([query]), 3, encoder=encoder.spec)
    text_of = dict(zip(train.ids.tolist(), train.texts.tolist(), strict=True))
    hits = "; ".join(f"{text_of[i]!r} ({s:.2f})" for i, s in zip(ids[0], scores[0], strict=True))
    console.print(
        f"Search ({index.bytes_per_vector():g} bytes/vector, binary + rescore) → {index_dir}: "
        f"{query!r} → {hits}"
    )


def _stream_and_report(
    pipe: Pipeline, tables: dict[str, Any], out_dir: Path, console: Console
) -> Path:
    """The model over a whole file, as `embedlab predict` runs it on millions of rows (in
    chunks, each written as it is done: a killed run resumes), then the HTML report."""
    from embedlab.analysis.report import model_report, write_report
    from embedlab.data.datasets import demo_path
    from embedlab.scale.predict_stream import predict_file

    streamed = predict_file(
        pipe, demo_path("test"), out_dir / "test_predictions.csv", chunk_rows=40, progress=False
    )
    console.print(
        f"Predictions for the test file, streamed in {streamed.chunks} chunks of 40 rows "
        f"(resumable, as `embedlab predict` does) → {streamed.output}: {streamed.rows} rows, "
        f"{streamed.out_of_scope} out of scope"
    )
    report_path = write_report(
        model_report(
            pipe, tables["test"].texts, tables["test"].labels, title="embedlab demo: test set"
        ),
        out_dir / "report.html",
    )
    console.print(f"Report (open it in a browser): [bold]{report_path.resolve()}[/]")
    return report_path


def _zero_shot(
    encoder: Any, tables: dict[str, Any], trained: dict[str, Any], out_dir: Path, console: Console
) -> dict[str, Any]:
    """Before any example is labelled: a zero-shot model from the label names alone, with the
    intents' areas as a hierarchy (`embedlab fit --labels-only ... --hierarchy ...`)."""
    from embedlab.data.datasets import demo_path
    from embedlab.models.hierarchy import read_hierarchy

    train, test = tables["train"], tables["test"]
    names = sorted({y for y in train.labels if y != "oos"})
    typical = [t for t, y in zip(train.texts, train.labels, strict=True) if y != "oos"]
    zs = Pipeline(encoder=encoder, hierarchy=read_hierarchy(demo_path("hierarchy")))
    zs.fit_labels_only(names, in_scope_texts=typical)  # texts only: no labels used
    zs_dir = zs.save(out_dir / "model_zero_shot", overwrite=True)
    m = zs.evaluate(test.texts, test.labels)
    levels = m["hierarchy"]["accuracy_by_level"]
    console.print(
        f"No examples yet? [bold]fit --labels-only[/] from the {len(names)} label names alone "
        f"(threshold set on unlabelled typical requests) → {zs_dir}: accuracy "
        f"{m['accuracy']:.1%} (trained model {trained['accuracy']:.1%}), area accuracy "
        f"{levels['level1']:.1%} over {len(zs.hierarchy.parents)} areas, OOS AUROC "
        f"{m['oos_auroc']:.3f}"
    )
    return {"accuracy": m["accuracy"], "area_accuracy": levels["level1"], "model": zs_dir}


def _label_set_change(pipe: Pipeline, out_dir: Path, console: Console) -> dict[str, Any]:
    """Requests the model was never taught arrive: discover them among what it rejects, add
    the clusters as classes (no refit), and show the new model answering them."""
    from embedlab.analysis.discover import save_discovery

    incoming = load_demo("incoming")
    t0 = time.perf_counter()
    # a batch of unlabelled requests: cluster all of them (`embedlab discover --all`);
    # without --all, discover looks only at what the model rejects
    found = pipe.discover(incoming.texts, all_rows=True, min_size=3)
    found_dir = save_discovery(found, out_dir / "discovered", overwrite=True)
    console.print(
        f"New requests arrive ({len(incoming)}): [bold]discover[/] clustered {found.selection} "
        f"into {found.k} new class(es) in {time.perf_counter() - t0:.1f} s → {found_dir}"
    )
    for c in found.clusters:
        console.print(
            f"  {c.name!r} ({c.size} rows): e.g. {', '.join(map(repr, c.central_texts[:2]))}"
        )
    names = found.names()
    keep = np.flatnonzero(names != None)  # noqa: E711
    result: dict[str, Any] = {"discovered": [c.name for c in found.clusters]}
    if keep.size == 0:
        return result
    t0 = time.perf_counter()
    grown = pipe.add_classes([found.texts[i] for i in keep], names[keep].tolist())
    model_dir = grown.save(out_dir / "model_v2", overwrite=True)
    lineage = grown.info["lineage"]
    console.print(
        f"[bold]add-classes[/] (no refit, {time.perf_counter() - t0:.1f} s) → {model_dir}: "
        f"version {lineage['version']}, {len(grown.classes_)} classes, parent "
        f"{str(lineage['parent'])[:12]}"
    )
    queries = ["what's the password for the guest wifi", "please water the garden tonight"]
    predicted = grown.predict(queries)
    for q, label in zip(queries, predicted, strict=True):
        console.print(f"  {q!r} → {label}")
    result.update(model=model_dir, predictions=dict(zip(queries, predicted, strict=True)))
    return result


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
