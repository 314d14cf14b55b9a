"""The ``embedlab`` command line: a thin layer over the library.

One module per group of commands (data, distilling, aligning, explaining, model,
predicting, classes, search, diagnostics, labeling, planning, demo, serving), all registered on the
Typer app of :mod:`embedlab.cli.common`, which also holds the option types and helpers they share.
Heavy modules are imported inside the commands, so ``embedlab --help`` starts in a
fraction of a second.
"""

from __future__ import annotations

from embedlab.cli.common import app, reflow_help

# Importing a command module registers its commands; --help lists them in this order.
# isort: off
from embedlab.cli import demo_command  # noqa: F401
from embedlab.cli import data  # noqa: F401
from embedlab.cli import distilling  # noqa: F401
from embedlab.cli import aligning  # noqa: F401
from embedlab.cli import explaining  # noqa: F401
from embedlab.cli import model  # noqa: F401
from embedlab.cli import predicting  # noqa: F401
from embedlab.cli import classes  # noqa: F401
from embedlab.cli import search  # noqa: F401
from embedlab.cli import diagnostics  # noqa: F401
from embedlab.cli import labeling  # noqa: F401
from embedlab.cli import planning  # noqa: F401
from embedlab.cli import serving  # noqa: F401

# isort: on

for _info in app.registered_commands:  # help prose wraps to the terminal, not the source
    if _info.callback is not None and _info.help is None:
        _info.callback.__doc__ = reflow_help(_info.callback.__doc__)

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``embedlab`` script."""
    app()
