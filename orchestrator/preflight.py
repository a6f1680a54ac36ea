"""Checks, before anything starts, that the services a sweep needs are there.

`check_services` tries each service the driver will use — the results store, the MLflow tracking
server, the Ray cluster — with a short timeout, and raises one `ServiceError` that names every one
that is not reachable and where, so that a wrong address fails in seconds with a clear message
instead of after a sweep has started (or after Ray's own 40-second connection retries).
Passwords in URLs are masked in every message.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from orchestrator.errors import InputError, ServiceError
from orchestrator.store.engine import mask_url

TIMEOUT_S = 5.0
# Addresses that make `ray.init` start or find a Ray on this machine: nothing remote to check.
LOCAL_RAY_ADDRESSES = ("", "auto", "local")


def check_services(mlflow_uri: str, results_db: str, address: str | None) -> None:
    """Raise ServiceError naming each unreachable service (one line each), or return."""
    problems = [
        problem
        for problem in (
            results_store_problem(results_db),
            mlflow_problem(mlflow_uri),
            ray_problem(address),
        )
        if problem is not None
    ]
    if problems:
        raise ServiceError("\n".join(problems))


# -- the results store ---------------------------------------------------------------------------


def results_store_problem(url: str) -> str | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError(f"results store URL {mask_url(url)!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_problem("results store", url, parsed.database)
    try:
        engine = create_engine(url, connect_args=_connect_timeout(parsed.get_backend_name()))
    except (ArgumentError, ImportError, ValueError) as exc:
        raise InputError(f"results store URL {mask_url(url)!r} is not usable: {exc}") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"results store {mask_url(url)} is unreachable: {_first_line(exc)}"
    finally:
        engine.dispose()
    return None


def _connect_timeout(backend: str) -> dict[str, Any]:
    # Without it a firewalled PostgreSQL host makes the driver wait for the kernel's TCP timeout.
    return {"connect_timeout": int(TIMEOUT_S)} if backend in ("postgresql", "mysql") else {}


def _sqlite_problem(what: str, url: str, database: str | None) -> str | None:
    """A SQLite file needs no server, only a folder it can be created or written in.

    Checked without opening the file, which would create it before the sweep has even started.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return f"{what} {mask_url(url)}: the folder {folder} does not exist"
    target = path if path.exists() else folder
    if not os.access(target, os.R_OK | os.W_OK):
        return f"{what} {mask_url(url)}: {target} is not writable"
    return None


# -- MLflow ---------------------------------------------------------------------------------------


def mlflow_problem(uri: str) -> str | None:
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        return _mlflow_server_problem(uri)
    if scheme.startswith("sqlite"):
        try:
            database = make_url(uri).database
        except ArgumentError:
            return f"MLflow tracking URI {mask_url(uri)} is not a valid SQLite URL"
        return _sqlite_problem("MLflow tracking store", uri, database)
    return None  # file stores, databricks, ...: MLflow reports its own errors well enough


def _mlflow_server_problem(uri: str) -> str | None:
    # /health answers without touching the backend store and without the host-header check.
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=TIMEOUT_S) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"MLflow tracking server {mask_url(uri)} is unreachable: {reason}"
    if status != 200:
        return f"MLflow tracking server {mask_url(uri)} is not healthy: GET /health gave {status}"
    return None


# -- Ray ------------------------------------------------------------------------------------------


def ray_problem(address: str | None) -> str | None:
    if address is None or address.strip().lower() in LOCAL_RAY_ADDRESSES:
        return None
    client = address.startswith("ray://")
    try:
        host, port = _host_port(address.removeprefix("ray://"))
    except ValueError:
        return f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or auto)"
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            pass
    except OSError as exc:
        return f"Ray cluster at {address} is unreachable: {exc.strerror or exc}"
    # A Ray Client server speaks another protocol; the GCS is checked only when driven directly.
    return None if client else _gcs_problem(address)


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(address)
    return host.strip("[]"), int(port)


def _gcs_problem(address: str) -> str | None:
    """Ask the cluster's GCS for its id: this is where a missing or wrong token shows.

    `ray._raylet.GcsClient` is what `ray health-check` uses; it is internal to Ray, so a Ray
    whose API has moved skips this step rather than failing. It retries for tens of seconds when
    the port is not a GCS, hence the thread and the deadline.
    """
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]
        from ray.exceptions import AuthenticationError
    except ImportError:
        return None
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            GcsClient(address=address)
            outcome.append(None)
        except BaseException as exc:  # reported to the caller's thread below
            outcome.append(exc)

    worker = threading.Thread(target=connect, name="gapsweep-preflight-ray", daemon=True)
    worker.start()
    worker.join(TIMEOUT_S * 2)
    if not outcome:
        return f"Ray cluster at {address} does not answer as a Ray GCS (is the port right?)"
    error = outcome[0]
    if isinstance(error, AuthenticationError):
        return (
            f"Ray cluster at {address} refused this driver's token: set RAY_AUTH_MODE=token "
            "and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
        )
    if isinstance(error, TypeError | AttributeError):
        return None  # another Ray's internal API: leave the check to ray.init
    if error is not None:
        return f"Ray cluster at {address} is unreachable: {_first_line(error)}"
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
