"""Keeping the stores in shape: `sync` (MLflow back-filled from the results store) and
`db upgrade` (the results store's schema)."""

from __future__ import annotations

import typer

from orchestrator.cli.common import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_RESULTS_DB,
    DEFAULT_STORAGE,
    MlflowUri,
    ResultsDb,
    Storage,
    SweepArg,
    console,
    error,
    exit_codes,
)


def sync(
    sweep: SweepArg,
    mlflow_uri: MlflowUri = DEFAULT_MLFLOW_URI,
    results_db: ResultsDb = DEFAULT_RESULTS_DB,
    storage: Storage = DEFAULT_STORAGE,
) -> None:
    """Back-fill MLflow from the results store: runs, metric steps and statuses it missed.
    It takes the sweep's lease, so it is refused while a driver runs the sweep. Results a
    driver kept in --storage while the store was away are recorded first."""
    from orchestrator.store.pending import replay_spilled
    from orchestrator.store.repository import ResultsStore
    from orchestrator.tracking.sync import sync_mlflow

    with (
        exit_codes(),
        ResultsStore.open_existing(results_db) as store,
        store.holding_lease(sweep) as fence,
    ):
        replay_spilled(store, sweep, storage, fence.epoch, console.print)
        behind = sync_mlflow(store, sweep, mlflow_uri, error)
    if behind:
        error(f"{behind} trials could not be brought up to date; is MLflow reachable?")
        raise typer.Exit(1)
    console.print(f"MLflow is up to date with the results store for sweep {sweep}")


def db_upgrade(results_db: ResultsDb = DEFAULT_RESULTS_DB) -> None:
    """Create the results store, or upgrade its schema to this version of gapsweep."""
    from orchestrator.store.engine import mask_url
    from orchestrator.store.repository import ResultsStore

    with exit_codes(), ResultsStore(results_db) as store:
        before, after = store.schema_change
    was = "empty" if before is None else f"at {before}"
    console.print(f"results store {mask_url(results_db)}: was {was}, now at {after}")
