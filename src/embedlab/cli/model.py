"""`embedlab fit`: open-set (or multi-label, zero-shot, hierarchical) classifiers on texts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli import fit_modes
from embedlab.cli import tables as tab
from embedlab.cli.common import (
    BackendOption,
    CacheOption,
    CalibrationOption,
    DelimiterOption,
    ForceOption,
    LabelColOption,
    ModelOption,
    SignOption,
    SkipEmptyOption,
    SplitOption,
    TargetFprOption,
    TextColOption,
    app,
    check_output_dir,
    read_input_texts,
    read_labelled,
    signing_key,
    user_errors,
)
from embedlab.core.errors import EmbedlabError
from embedlab.models.fit_options import CLI_NAMES


@app.command(rich_help_panel="Classify")
def fit(
    data: Annotated[
        Path | None,
        typer.Argument(
            help="Labelled training data (CSV, TSV, JSONL, JSON, Parquet); none with --labels-only."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Directory to write the model bundle to."),
    ] = None,
    labels_only: Annotated[
        Path | None,
        typer.Option(
            help="Zero-shot: a file of label names (a 'label' column, optionally "
            "'description'; a label may repeat with several descriptions; or a .txt, one "
            "label a line) instead of DATA. --val texts (labels not needed) set the "
            "out-of-scope threshold; without them nothing is rejected.",
        ),
    ] = None,
    hierarchy: Annotated[
        Path | None,
        typer.Option(
            help="Parents of the labels: CSV with columns child,parent, or JSON "
            '({"child": "parent"} or {"parent": ["child", ...]}), any depth. Predictions '
            "then carry every level (label_level1 = the top), evaluation scores each.",
        ),
    ] = None,
    text_col: TextColOption = "text",
    label_col: LabelColOption = "label",
    oos_label: Annotated[
        str, typer.Option(help="Label of out-of-scope rows: used only for calibration.")
    ] = "oos",
    split: SplitOption = None,
    val: Annotated[
        Path | None,
        typer.Option(help="Validation data: its in-scope rows set the out-of-scope threshold."),
    ] = None,
    val_split: Annotated[
        list[str] | None, typer.Option(help="Split(s) of --val when it is a split-layout JSON.")
    ] = None,
    unlabeled: Annotated[
        Path | None,
        typer.Option(
            help="Unlabelled texts (same --text-col): the model then self-trains on its own "
            "confident guesses among them; rows it rejects as out of scope stay out."
        ),
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
    target_fpr: TargetFprOption = "auto",
    calibration: CalibrationOption = "split",
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label",
            help="Each label cell holds a set of labels joined by --label-sep (a row labelled "
            "--oos-label has none); one threshold per label, calibrated on held-out folds. "
            "Heads: auto (linear or mlp, by held-out macro-F1), linear, mlp, prototype, knn.",
        ),
    ] = False,
    label_sep: Annotated[
        str, typer.Option(help="With --multi-label: the separator between a cell's labels.")
    ] = ",",
    target_precision: Annotated[
        float | None,
        typer.Option(
            help="With --multi-label: each label's threshold is the lowest that keeps its "
            "held-out precision at this level (default: the one that maximises its F1)."
        ),
    ] = None,
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
            "'center,whiten,sq8' (see `embedlab plan` to choose one)."
        ),
    ] = None,
    model: ModelOption = None,
    cache: CacheOption = True,
    skip_empty: SkipEmptyOption = False,
    delimiter: DelimiterOption = None,
    sign: SignOption = None,
    drop_label_issues: Annotated[
        bool, typer.Option(help="Leave out the rows whose labels look wrong (cleanlab; said).")
    ] = False,
    cat_cols: tab.CatColsOption = None,
    num_cols: tab.NumColsOption = None,
    tables: tab.TablesOption = "auto",
    budget: tab.BudgetOption = None,
    no_text: tab.NoTextOption = False,
    seed: tab.TableSeedOption = 0,
    select_columns: tab.SelectColumnsOption = False,
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

      embedlab fit few_labels.csv --unlabeled last_month.csv -o model/   (self-training)

      embedlab fit tickets.jsonl -o model/ --text-col body --label-col queue --no-adapt

      embedlab fit train.csv -o small/ --transform layer3,dim128,norm,sq8   (cheaper vectors)

      embedlab fit tickets.csv --multi-label -o model/   (label cells like "refund,late_delivery")

      embedlab fit --labels-only intents.csv --val recent.csv -o model/   (zero-shot)

      embedlab fit train.csv --hierarchy parents.csv -o model/   (predict every level)

      embedlab fit reviews.csv --cat-cols item_id,department --num-cols age --budget 2MB -o m/
    """
    opts = dict(locals())  # every option, for the multi-label and zero-shot paths
    from embedlab.compress.transforms import TransformChain
    from embedlab.encoders.loading import open_encoder
    from embedlab.models.hierarchy import read_hierarchy
    from embedlab.models.pipeline import Pipeline

    with user_errors():
        if output is None:
            raise EmbedlabError("name the model directory to write with --output / -o")
        if (data is None) == (labels_only is None):
            raise EmbedlabError("give training DATA, or --labels-only LABELS_FILE (not both)")
        if cat_cols or num_cols or no_text:  # records: a table model
            check_output_dir(output, force, data, model)
            return tab.fit_tables(opts)
        config = fit_modes.fit_config(opts).check(
            CLI_NAMES
        )  # which option goes with which structure
        check_output_dir(output, force, data, val, model, unlabeled, labels_only)
        opts["sign_key"] = signing_key(sign)
        tree = read_hierarchy(hierarchy) if hierarchy is not None else None
        layer = TransformChain(transform).layer if transform else None
        encoder = open_encoder(model, cache=cache, layer=layer, backend=backend)
        pipe = Pipeline.from_config(config, encoder, hierarchy=tree)
        if labels_only is not None:
            fit_modes.fit_labels_only(opts, pipe)
            return
        table = read_labelled(data, text_col, label_col, split, skip_empty, delimiter)
        if drop_label_issues:
            from embedlab.cli.fit_modes import without_label_issues

            table = without_label_issues(table, encoder, oos_label, multi_label)
        read = {"text_col": text_col, "skip_empty": skip_empty, "delimiter": delimiter}
        pool = None
        if unlabeled is not None:
            pool = read_input_texts(unlabeled, label_col=None, **read).texts
        if multi_label:
            fit_modes.fit_multi_label(opts, pipe, table, pool)
            return
        validation = None
        if val is not None:
            vt = read_labelled(val, text_col, label_col, val_split, skip_empty, delimiter)
            validation = (vt.texts, vt.labels)
        t0 = time.perf_counter()
        pipe.fit(table.texts, table.labels, validation=validation, unlabeled=pool)
        pipe.save(output, overwrite=force, sign=opts["sign_key"])
        fit_modes.say_single_label_fit(pipe, config, output, time.perf_counter() - t0)
