"""Issue 16: no credential in any output. A password in the MLflow URI or the results store URL
never reaches a line the CLI prints, even where a library quotes the URL in its own error (MLflow
does: "API request to http://user:password@host/... failed"); the error stays clear: what failed,
where (the URL with `***` for the password), and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InputError, ServiceError, without_passwords
from orchestrator.store.repository import ResultsStore
from orchestrator.tracking.client import MlflowTracker
from orchestrator.tracking.mirror import MlflowMirror
from tests.helpers import free_port, orchestrator, sweep_spec, write_spec

SECRET = "s3cret"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@127.0.0.1:5000/api", "http://alice:***@127.0.0.1:5000/api"),
        ("at 'postgresql://bob:s3cret@db:5432/r'", "at 'postgresql://bob:***@db:5432/r'"),
        ("https://u:p@ss:s3cret@host/x", "https://u:***@host/x"),  # an unencoded @ in it
        ("a http://a:1@h and b https://b:s3cret@h/", "a http://a:***@h and b https://b:***@h/"),
        ("http://127.0.0.1:5000/path@x http://h:80", "http://127.0.0.1:5000/path@x http://h:80"),
        ("sqlite:///results.db", "sqlite:///results.db"),
    ],
)  # fmt: skip
def test_passwords_in_urls_are_masked_in_any_text(text: str, shown: str) -> None:
    assert without_passwords(text) == shown


def test_the_projects_errors_never_carry_a_password() -> None:
    quoted = f"API request to http://alice:{SECRET}@127.0.0.1:1/api/2.0 failed"
    assert SECRET not in str(ServiceError(f"MLflow is unreachable: {quoted}"))
    problem = InputError([quoted, "another"])
    assert SECRET not in str(problem) and all(SECRET not in p for p in problem.problems)


def assert_no_secret(result: object, *clear: str) -> str:
    out, err = getattr(result, "stdout", ""), getattr(result, "stderr", "")
    assert SECRET not in out + err, out + err
    for words in clear:
        assert words in err, err
    return str(err)


def stored_sweep(workdir: Path) -> None:
    with ResultsStore(f"sqlite:///{workdir / 'results.db'}") as store:
        store.upsert_sweep("s", "dual_encoder", "name: s\n", "abc", ("gap_norm", "min"))


def test_an_unreachable_mlflow_with_a_password_is_named_without_it(tmp_path: Path) -> None:
    """`sync` has no preflight: MLflow's own error, which quotes the URL, is what is shown."""
    stored_sweep(tmp_path)
    port = free_port()
    uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
    result = orchestrator("sync", "s", "--mlflow-uri", uri, cwd=tmp_path)
    assert result.returncode == 1
    assert_no_secret(
        result, f"MLflow tracking store http://alice:***@127.0.0.1:{port} is unreachable"
    )
    assert "Connection refused" in result.stderr


def test_submit_names_both_unreachable_services_without_their_passwords(tmp_path: Path) -> None:
    write_spec(tmp_path / "s.yaml", sweep_spec("s"))
    mlflow, db = free_port(), free_port()
    result = orchestrator(
        "submit", "s.yaml",
        "--mlflow-uri", f"http://alice:{SECRET}@127.0.0.1:{mlflow}",
        "--results-db", f"postgresql+psycopg://bob:{SECRET}@127.0.0.1:{db}/results",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert_no_secret(
        result,
        f"results store postgresql+psycopg://bob:***@127.0.0.1:{db}/results is unreachable",
        f"MLflow tracking server http://alice:***@127.0.0.1:{mlflow} is unreachable",
    )


def test_a_results_store_with_a_password_is_named_without_it(tmp_path: Path) -> None:
    db = free_port()
    url = f"postgresql+psycopg://bob:{SECRET}@127.0.0.1:{db}/results"
    result = orchestrator("results", "s", "--results-db", url, cwd=tmp_path)
    assert result.returncode == 1
    assert_no_secret(result, f"results store postgresql+psycopg://bob:***@127.0.0.1:{db}/results")


def test_the_mirrors_warning_of_an_mlflow_outage_has_no_password(tmp_path: Path) -> None:
    said: list[str] = []
    tracker = MlflowTracker(f"http://alice:{SECRET}@127.0.0.1:{free_port()}")
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        mirror = MlflowMirror(tracker, store, "s", ("1", "run"), said.append)
        mirror.finish_parent("run", {"trials_completed": 1.0}, "FINISHED")
    assert said and "MLflow is unreachable" in said[0] and "alice:***@" in said[0]
    assert all(SECRET not in line for line in said)
