"""Issue 19: a sweep resubmitted under its name with an edited spec. An extended grid keeps the
sweep's version and runs only the new trials; any other edit is refused with exit 2, one line
naming the changed fields and the ways out, until `--new-version` starts version 2, which the
readers then show by default (`--version 1` the old one). Real local Ray, MLflow in a SQLite
file and a SQLite results store, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from orchestrator.store.repository import ResultsStore
from orchestrator.store.schema import _config
from tests.helpers import orchestrator, stored, sweep_spec, write_spec

pytestmark = pytest.mark.slow


def keys_of(workdir: Path, *args: str) -> list[str]:
    listed = orchestrator("results", "grown", "--format", "json", *args, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    return [row["key"] for row in json.loads(listed.stdout)]


def test_an_extended_grid_runs_only_its_new_trials_and_other_edits_need_a_new_version(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "grown.yaml"
    write_spec(spec, sweep_spec("grown", 2))
    first = orchestrator("submit", spec.name, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    old = {t.key: t.attempts for t in stored(tmp_path, "grown")}
    assert len(old) == 2

    write_spec(spec, sweep_spec("grown", 3))  # one more seed: the two trials run still count
    grown = orchestrator("submit", spec.name, cwd=tmp_path)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    after = {t.key: t for t in stored(tmp_path, "grown")}
    assert len(after) == 3 and all(after[k].attempts == old[k] for k in old)  # not run again
    assert [t.attempts for k, t in after.items() if k not in old] == [1]
    assert sorted(keys_of(tmp_path)) == sorted(after)

    changed = sweep_spec("grown", 3, base={"optim": {"lr": 0.003}})
    write_spec(spec, changed)
    refused = orchestrator("submit", spec.name, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "base.optim.lr: (unset) -> 0.003" in lines[0] and "--new-version" in lines[0]
    assert "new name" in lines[0]
    assert len(stored(tmp_path, "grown")) == 3  # nothing was registered

    second = orchestrator("submit", spec.name, "--new-version", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    v2 = keys_of(tmp_path)
    assert len(v2) == 3 and not set(v2) & set(after)  # the readers show version 2 alone
    assert sorted(keys_of(tmp_path, "--version", "1")) == sorted(after)
    listed = orchestrator("results", "grown", "--format", "json", cwd=tmp_path)
    assert "read version 2 of 2" in " ".join(listed.stderr.split())
    missing = orchestrator("results", "grown", "--version", "3", cwd=tmp_path)
    assert missing.returncode == 2 and "has versions 1, 2" in missing.stderr
    sweeps = orchestrator("sweeps", cwd=tmp_path)
    assert sweeps.returncode == 0 and "grown" in sweeps.stdout
    row = next(line for line in sweeps.stdout.splitlines() if "grown" in line)
    assert row.split("│")[2].strip() == "2"  # the version column


def test_a_store_from_before_versions_makes_each_sweep_its_version_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        connection.execute(
            text(
                "INSERT INTO sweeps (id, name, trainer, spec_text, spec_hash, metric_name, "
                "metric_mode, created_at) VALUES (1, 'old', 'dual_encoder', 'name: old', 'h', "
                "'gap_norm', 'min', '2026-01-01')"
            )
        )
        for position, key in enumerate(("k2", "k1")):
            connection.execute(
                text(
                    "INSERT INTO trials (sweep_id, key, name, position, config, varied, status, "
                    "attempts) VALUES (1, :key, :key, :position, '{}', '{}', 'completed', 1)"
                ),
                {"key": key, "position": position},
            )
    engine.dispose()
    with ResultsStore(url) as store:
        version = store.versions.get("old")
    assert version is not None and version.number == 1
    assert version.keys == ("k2", "k1") and version.spec_text == "name: old"
