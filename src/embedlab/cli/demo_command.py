"""`embedlab demo`: the main job on the packaged encoder and demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli.common import (
    CacheOption,
    app,
    console,
    user_errors,
)


@app.command(rich_help_panel="Start here")
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the demo's outputs.")
    ] = Path("embedlab-demo"),
    cache: CacheOption = True,
) -> None:
    """Run the main job on the packaged encoder and the packaged demo intents.

    Encodes the demo's train and test splits with all-MiniLM-L6-v2, saves both as
    EmbeddingSets and shows how the space separates intents and out-of-scope queries.

    [bold]Example[/]

      embedlab demo -o /tmp/embedlab-demo
    """
    from embedlab.demo import run_demo

    with user_errors():
        run_demo(output, cache=cache, console=console)
