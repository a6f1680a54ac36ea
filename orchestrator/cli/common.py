"""What every command of the CLI shares: consoles, option types, and errors as exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from orchestrator.errors import GapsweepError, InputError, without_passwords
from orchestrator.settings import DEFAULT_MLFLOW_URI, DEFAULT_RESULTS_DB, DEFAULT_STORAGE

__all__ = ["DEFAULT_MLFLOW_URI", "DEFAULT_RESULTS_DB", "DEFAULT_STORAGE"]

# No emoji codes: a user's ":-1:" (a --shift grid, a file name) must print as typed.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

SpecArg = Annotated[Path, typer.Argument(help="sweep spec YAML file", show_default=False)]
SweepArg = Annotated[str, typer.Argument(help="sweep name", show_default=False)]
ResultsDb = Annotated[
    str,
    typer.Option(
        "--results-db", envvar="ORCHESTRATOR_RESULTS_DB", help="SQLAlchemy URL of the results store"
    ),
]
MlflowUri = Annotated[
    str, typer.Option("--mlflow-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI")
]
Address = Annotated[
    str | None,
    typer.Option("--address", envvar="RAY_ADDRESS", help="Ray cluster address; local Ray if unset"),
]
Storage = Annotated[Path, typer.Option("--storage", help="Ray Tune storage folder")]
Set = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="override a base setting of the spec: path=value (a YAML value), e.g. "
        "--set model.init.checkpoint=/data/clip; repeat for more",
        show_default=False,
    ),
]
Version = Annotated[
    int | None,
    typer.Option(
        "--version",
        min=1,
        help="read this version of the sweep's spec [default: the latest]",
        show_default=False,
    ),
]
RerunFailed = Annotated[
    bool, typer.Option("--rerun-failed", help="also run trials that failed before")
]


def error(message: str) -> None:
    """One error line; no password of a URL in it is shown (a library's message may quote one)."""
    line = escape(without_passwords(message))
    err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turn the project's errors into one line per problem and an exit code, never a traceback."""
    from trainers.errors import TrainerError

    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            error(problem)
        raise typer.Exit(2) from None
    except TrainerError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    except GapsweepError as exc:
        for line in str(exc).splitlines():
            error(line)
        raise typer.Exit(1) from None
