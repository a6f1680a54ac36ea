"""Shared fixtures: tiny trial configs and spec files that run in seconds."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY_BASE: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 64, "n_eval": 32, "image_size": 12},
    "model": {
        "embed_dim": 8,
        "image": {"channels": [4]},
        "text": {"hidden_size": 16, "num_layers": 1, "num_heads": 2},
    },
    "optim": {"batch_size": 16, "epochs": 1},
    "eval": {"every_steps": 2},
}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The caches trials keep on disk (spoken clips, frozen towers' embeddings) go to a folder
    of the test session, not the user's ~/.cache; trials started in other processes inherit it."""
    folder = tmp_path_factory.mktemp("gapsweep-cache")
    before = os.environ.get("GAPSWEEP_CACHE_DIR")
    os.environ["GAPSWEEP_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("GAPSWEEP_CACHE_DIR", None)
    else:
        os.environ["GAPSWEEP_CACHE_DIR"] = before


@pytest.fixture
def tiny_base() -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(TINY_BASE))  # a deep copy each test may change


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec mapping (or raw text) to a YAML file in the test's folder."""

    def write(content: dict[str, Any] | str | bytes, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture(params=["sqlite", "postgresql"])
def results_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A results store URL for the CLI (ORCHESTRATOR_RESULTS_DB): a SQLite file in the test's
    folder, or a new database of the real PostgreSQL server. Its schema is made here, so that a
    test polling it never migrates it under a driver."""
    from orchestrator.store.repository import ResultsStore
    from orchestrator.store.testing import temporary_postgres_database
    from tests.helpers import missing_postgres

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results.db'}"
        ResultsStore(url).close()
        yield url
        return
    if why := missing_postgres():
        pytest.skip(why)
    with temporary_postgres_database() as url:
        ResultsStore(url).close()
        yield url
