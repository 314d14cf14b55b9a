"""The CLI's shared parts: the Typer app, the consoles, option types every command reuses,
and the helpers that turn library errors into one readable line."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from embedlab import __version__
from embedlab.core.errors import EmbedlabError

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


def print_table(table) -> None:
    """Print a rich table: fitted to a terminal, at its full width when piped or captured.

    Rich clamps a print's width to the console's (80 columns without a terminal), which cuts
    headers and hides columns in logs and CI; piped output gets a console as wide as needed.
    """
    if console.is_terminal:
        console.print(table)
    else:
        Console(soft_wrap=True, width=1_000, force_terminal=False).print(table)


BackendOption = Annotated[
    str | None,
    typer.Option(
        help="How the encoder runs: auto (fastest backend that passes a quality check "
        "against torch), torch, onnx or onnx-int8. Default: $EMBEDLAB_BACKEND, else auto."
    ),
]


TextColOption = Annotated[str, typer.Option(help="Column holding the texts.")]
LabelColOption = Annotated[str, typer.Option(help="Column holding the labels.")]
SplitOption = Annotated[
    list[str] | None, typer.Option(help="Split(s) of a split-layout JSON (repeatable).")
]
CacheOption = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Reuse vectors of texts encoded before.")
]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "--encoder",
        help="Encoder directory: a local sentence-transformers model, or a student made by "
        "`embedlab distill` (default: the packaged all-MiniLM-L6-v2).",
    ),
]
StudentOption = Annotated[
    Path | None,
    typer.Option(
        "--encoder",
        help="Predict through this student of the model's encoder (made by `embedlab distill "
        "--texts`): the model's head and thresholds stay; the student's fidelity and label "
        "agreement with the teacher are measured, printed and recorded.",
    ),
]
SignOption = Annotated[
    Path | None,
    typer.Option(
        "--sign",
        help="Sign the bundle with this key file (`embedlab keys sign-key create`): a server "
        "started with --require-signature serves only bundles signed with its key.",
    ),
]


def signing_key(path: Path | None):
    """The SigningKey in ``path`` (read before any work), or None."""
    if path is None:
        return None
    from embedlab.store.signing import load_key

    return load_key(path)


ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Replace OUTPUT if it exists (and embedlab wrote it).")
]
RejectOption = Annotated[
    bool,
    typer.Option(
        "--reject/--no-reject",
        help="Reject out-of-scope inputs (the default). --no-reject always gives the head's "
        "best class, for closed-set data, without refitting.",
    ),
]
CalibrationOption = Annotated[
    str,
    typer.Option(
        help="How the out-of-scope threshold is calibrated (split conformal: at most "
        "--target-fpr of in-scope inputs rejected, at any data size): split = one threshold; "
        "mondrian = one per predicted class, the rate holding for each class (needs "
        "1/target-fpr - 1 held-out rows per class).",
    ),
]
TargetFprOption = Annotated[
    str,
    typer.Option(
        help="Share of in-scope inputs the out-of-scope threshold may reject (e.g. 0.02), "
        "'none' for a closed-set model that rejects nothing, or 'auto': 0.02 when the "
        "training data has --oos-label rows, none when it has no such rows.",
    ),
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


RayOption = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on Ray: a pool of actors, each loading the encoder / model once (a local "
        "runtime on 127.0.0.1 unless --ray-address; needs the 'ray' extra). Same output.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        help="An existing Ray cluster: HOST:6379 (its head), ray://HOST:10001 (Ray Client) "
        "or auto. Its workers must see the output's folder (shared storage, same path); a "
        "cluster with token authentication wants RAY_AUTH_MODE=token and its token."
    ),
]
RayActorsOption = Annotated[int, typer.Option(help="Ray actors (one CPU each).")]


def ray_options(ray: bool, address: str | None, actors: int):
    """RayOptions for --ray / --ray-address / --ray-actors (None without --ray)."""
    if not ray:
        if address:
            raise EmbedlabError("--ray-address needs --ray")
        return None
    if actors < 1:
        raise EmbedlabError(f"--ray-actors must be at least 1, got {actors}")
    from embedlab.scale.distributed import RayOptions

    return RayOptions(address=address, actors=actors)  # checks the address's form


def read_input_texts(data: Path, *, skip_empty: bool = False, **kwargs):
    """read_texts with --skip-empty mapped, saying which rows were skipped."""
    from embedlab.data.readers import read_texts

    table = read_texts(data, on_empty="skip" if skip_empty else "error", **kwargs)
    say_skipped(table)
    return table


def read_labelled(
    data: Path,
    text_col: str,
    label_col: str,
    split: list[str] | None,
    skip_empty: bool,
    delimiter: str | None = None,
):
    """Labelled texts for fit / evaluate / report / plan (the label column must exist)."""
    return read_input_texts(
        data,
        text_col=text_col,
        label_col=label_col,
        splits=split,
        require_labels=True,
        skip_empty=skip_empty,
        delimiter=delimiter,
    )


def say_skipped(table) -> None:
    if table.skipped_rows:
        rows = [r + 1 for r in table.skipped_rows]
        err_console.print(
            f"[yellow]skipped {len(rows)} empty text(s)[/] at row(s) "
            f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''} (counted from 1)"
        )


def rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 10 else f"{r:.2g}"


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}" + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def _summarise_warnings(caught: list) -> None:
    """scikit-learn's (and its helpers') warnings as one line per kind; others as they were."""
    import warnings

    third_party: dict[str, list[str]] = {}
    for w in caught:
        origin = str(getattr(w.category, "__module__", "")) + " " + str(w.filename)
        if any(lib in origin for lib in ("sklearn", "scipy", "threadpoolctl")):
            third_party.setdefault(w.category.__name__, []).append(str(w.message))
        elif "embedlab" in origin and issubclass(w.category, UserWarning):  # our own: a line
            err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    for kind, messages in third_party.items():
        first = " ".join(messages[0].split())
        first = first if len(first) <= 160 else first[:157] + "..."
        times = "once" if len(messages) == 1 else f"{len(messages)} times"
        err_console.print(
            f"[yellow]note:[/] scikit-learn warned {times} ({kind}: {first})",
            highlight=False,
            soft_wrap=True,
        )


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print library errors as one readable line and exit 2, without a traceback; the
    warnings of scikit-learn and its helpers become one summarised line per kind."""
    import warnings

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield from _user_errors()
    finally:
        _summarise_warnings(caught)  # after the recorder is gone: shown, not recorded again


def _user_errors() -> Iterator[None]:
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


def reflow_help(doc: str | None) -> str | None:
    """A command's docstring as help text that wraps to the terminal: the lines of a prose
    paragraph are joined (Typer's rich mode keeps single line breaks, so source-wrapped
    lines came out ragged); paragraphs with indented lines (examples) stay as written."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    out = []
    for par in paragraphs:
        lines = par.splitlines()
        keep = any(line.startswith((" ", "\t")) for line in lines) or par.startswith("\b")
        out.append(par if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def check_output_dir(output: Path, force: bool, *inputs: Path | None) -> None:
    """Stop before any work when OUTPUT may not be written (see atomic.check_output_dir)."""
    from embedlab.store import atomic

    atomic.check_output_dir(output, force=force, inputs=tuple(p for p in inputs if p is not None))


def check_output_file(output: Path, force: bool, *inputs: Path | None) -> None:
    """Stop before any work when file OUTPUT may not be written."""
    from embedlab.store import atomic

    atomic.check_output_file(output, force=force, inputs=tuple(p for p in inputs if p is not None))


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
