"""The `orchestrator` command line: parse, call one library function, print, and map errors to
exit codes. One module per command group; each command builds one settings object.

Exit codes: 0 success; 1 the work ran but something failed (a trial, a service); 2 bad input.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from orchestrator.cli import maintenance, results, sweep
from orchestrator.cli.analyze import analyze
from orchestrator.cli.report import report

app = typer.Typer(
    help="gapsweep: sweeps of contrastive dual encoders for modality-gap research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the results store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

COMMANDS: tuple[Callable[..., None], ...] = (
    sweep.validate,
    sweep.plan,
    sweep.submit,
    sweep.resume,
    sweep.cancel,
    maintenance.sync,
    analyze,
    report,
    results.sweeps,
    results.status,
    results.results,
    results.series,
    results.compare,
)
for command in COMMANDS:
    app.command()(command)
db_app.command("upgrade")(maintenance.db_upgrade)
