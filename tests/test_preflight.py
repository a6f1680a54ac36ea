"""Preflight checks against real endpoints: the PostgreSQL test server, SQLite folders, and ports
with nothing (or the wrong thing) behind them. The checks against a live MLflow server and a Ray
cluster with token authentication are in test_cluster.py, which starts both."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import InputError, ServiceError
from orchestrator.preflight import (
    check_services,
    mlflow_problem,
    ray_problem,
    results_store_problem,
)
from orchestrator.store.testing import POSTGRES_ADMIN_URL
from tests.helpers import NEEDS_POSTGRES, free_port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


class _Unhealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unhealthy_http() -> Iterator[str]:
    """An HTTP server answering 503, as a proxy in front of a stopped MLflow does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_local_defaults_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    check_services("sqlite:///mlflow.db", "sqlite:///results.db", None)
    assert list(tmp_path.iterdir()) == [], "a check must not create the SQLite files"


@NEEDS_POSTGRES
def test_postgresql_results_store_passes() -> None:
    assert results_store_problem(POSTGRES_ADMIN_URL) is None


def test_unreachable_postgresql_is_named_with_its_password_masked() -> None:
    url = f"postgresql+psycopg://alice:s3cret@127.0.0.1:{free_port()}/results"
    problem = results_store_problem(url)
    assert problem is not None
    assert problem.startswith("results store postgresql+psycopg://alice:***@127.0.0.1:")
    assert "unreachable" in problem and "s3cret" not in problem


def test_sqlite_in_a_missing_folder(tmp_path: Path) -> None:
    problem = results_store_problem(f"sqlite:///{tmp_path}/nope/results.db")
    assert problem == f"results store sqlite:///{tmp_path}/nope/results.db: the folder " + (
        f"{tmp_path}/nope does not exist"
    )
    problem = mlflow_problem(f"sqlite:///{tmp_path}/nope/mlflow.db")
    assert problem is not None and problem.startswith("MLflow tracking store")


def test_a_results_url_that_is_no_url_is_bad_input() -> None:
    with pytest.raises(InputError, match="not a database URL"):
        results_store_problem("results.db")
    with pytest.raises(InputError, match="not usable"):
        results_store_problem("nosuchdb://h/x")


def test_mlflow_server_down(unhealthy_http: str) -> None:
    down = f"http://bob:pw@127.0.0.1:{free_port()}"
    problem = mlflow_problem(down)
    assert problem is not None and problem.startswith("MLflow tracking server http://bob:***@")
    assert "unreachable" in problem and ":pw@" not in problem
    assert mlflow_problem(unhealthy_http) == (
        f"MLflow tracking server {unhealthy_http} is not healthy: GET /health gave 503"
    )


def test_ray_addresses_that_need_no_check() -> None:
    for address in (None, "auto", "local", ""):
        assert ray_problem(address) is None


def test_ray_address_with_nothing_behind_it() -> None:
    port = free_port()
    started = time.monotonic()
    problem = ray_problem(f"127.0.0.1:{port}")
    assert problem is not None and problem.startswith(f"Ray cluster at 127.0.0.1:{port} is unreach")
    assert time.monotonic() - started < 5, "a closed port must fail fast, not after Ray's retries"
    problem = ray_problem(f"ray://127.0.0.1:{port}")
    assert problem is not None and "unreachable" in problem
    assert ray_problem("no-port-here") is not None


def test_ray_address_that_is_not_a_gcs(silent_server: int) -> None:
    problem = ray_problem(f"127.0.0.1:{silent_server}")
    assert problem == (
        f"Ray cluster at 127.0.0.1:{silent_server} does not answer as a Ray GCS "
        "(is the port right?)"
    )


def test_every_unreachable_service_is_named_at_once(tmp_path: Path) -> None:
    mlflow_uri = f"http://127.0.0.1:{free_port()}"
    results_db = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/results"
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceError) as info:
        check_services(mlflow_uri, results_db, address)
    lines = str(info.value).splitlines()
    assert [line.split(" ")[0] for line in lines] == ["results", "MLflow", "Ray"]
