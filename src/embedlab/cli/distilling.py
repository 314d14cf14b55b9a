"""`embedlab distill`: a cheaper encoder (a student) made from the teacher and your texts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli.common import (
    DelimiterOption,
    ForceOption,
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
def distill(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the student to.")
    ],
    kind: Annotated[
        str,
        typer.Option(
            help="static: a token-embedding table (tens of times faster, no transformer); "
            "shallow: the teacher's first --layers layers plus a trained map."
        ),
    ] = "static",
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="The sentence-transformers model to distil (default: the packaged "
            "all-MiniLM-L6-v2)."
        ),
    ] = None,
    texts: Annotated[
        Path | None,
        typer.Option(
            help="Your texts (CSV, TSV, JSONL, JSON, Parquet; thousands are better): the "
            "student learns to reproduce the teacher's vectors of them, so models fitted "
            "on the teacher predict through it. Needed for shallow."
        ),
    ] = None,
    text_col: TextColOption = "text",
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
    ] = None,
    layers: Annotated[int, typer.Option(help="Shallow: teacher layers kept.")] = 3,
    head: Annotated[str, typer.Option(help="Shallow: the map, linear or mlp.")] = "linear",
    dim: Annotated[int, typer.Option(help="Static: width of the token table (PCA).")] = 256,
    dtype: Annotated[
        str, typer.Option(help="Static: token table storage, int8, float16 or float32.")
    ] = "int8",
    epochs: Annotated[
        int | None,
        typer.Option(help="Training passes over --texts (default: 8 static, 3 shallow)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and training.")] = 0,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    force: ForceOption = False,
) -> None:
    """Distil a cheaper encoder (a student) from the teacher.

    A tenth of --texts (up to 2,000) is held out: the student's fidelity is its cosine to the
    teacher there. OUTPUT holds the weights, the tokenizer and embedlab-student.json (teacher
    fingerprint, kind, text counts, fidelity, texts/s). Use it as --encoder OUTPUT with
    encode, fit, plan and serve; a student made with --texts also predicts with models
    fitted on the teacher (predict / evaluate --encoder OUTPUT).

    [bold]Examples[/]

      embedlab distill -o student/ --texts my_texts.csv

      embedlab distill -o shallow/ --kind shallow --texts my_texts.csv --layers 3

      embedlab predict model/ new.csv -o out.csv --encoder student/
    """
    from embedlab.distill import distill as run

    with user_errors():
        check_output_dir(output, force, texts, teacher)
        corpus = None
        if texts is not None:
            corpus = read_input_texts(
                texts,
                text_col=text_col,
                label_col=None,
                splits=split,
                skip_empty=skip_empty,
                delimiter=delimiter,
            ).texts
        m = run(
            output,
            kind=kind,
            teacher=teacher,
            texts=corpus,
            layers=layers,
            dim=dim,
            dtype=dtype,
            head=head,
            epochs=epochs,
            seed=seed,
            overwrite=force,
        )
        fid = m.get("fidelity")
        fidelity = (
            f"fidelity {fid['mean_cosine']:.3f} mean cosine to the teacher on "
            f"{fid['texts']} held-out texts"
            if fid
            else f"its own {m['dim']}-d space (no --texts: models fitted on the teacher "
            "cannot predict through it)"
        )
        speed = m["texts_per_second"] / max(m["teacher_texts_per_second"], 1e-9)
        console.print(
            f"wrote {output}: {m['kind']} student of {m['teacher']['name']}, "
            f"{m['training_texts']} training texts; {fidelity}; {rate(m['texts_per_second'])} "
            f"texts/s ({speed:.1f}× the teacher's {rate(m['teacher_texts_per_second'])}); "
            f"{m['bytes'] / 2**20:.1f} MB; {m['seconds']:.0f} s"
        )
