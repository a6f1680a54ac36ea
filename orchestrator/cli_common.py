"""What every command of the CLI shares: consoles, option types, and errors as exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.errors import GapsweepError, InputError

DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
DEFAULT_RESULTS_DB = "sqlite:///results.db"

console = Console()
err_console = Console(stderr=True)

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


def error(message: str) -> None:
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)


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


def require_store(url: str) -> None:
    """Reading from a SQLite store that does not exist would silently create an empty one."""
    if missing_sqlite_file(url):
        raise InputError(
            f"no results store at {url}; run `orchestrator submit SPEC` first or pass --results-db"
        )


def missing_sqlite_file(url: str) -> bool:
    prefix = "sqlite:///"
    return url.startswith(prefix) and not Path(url[len(prefix) :]).exists()
