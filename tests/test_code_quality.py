"""Lint, strict typing, the architecture's walls (import-linter contracts in pyproject.toml) and
the size rules of the code: modules of at most 400 lines, functions of at most 50."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "trainers")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50  # the body; a Typer command's option list is its signature, not counted
MIGRATIONS = ROOT / "orchestrator" / "store" / "migrations"


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_ruff() -> None:
    result = run_tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    """trainers never import Ray, MLflow, SQLAlchemy, Alembic or the orchestrator, and each
    package's rooms import only downwards (docs/architecture.md)."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_50_lines() -> None:
    long = {}
    for path in sources():
        if MIGRATIONS in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = (node.end_lineno or 0) - node.body[0].lineno + 1
                if body > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = body
    assert long == {}


def test_no_tracked_file_names_this_machines_folders() -> None:
    """Code and tests run from any clone: none names the folder this checkout sits in (where the
    paper's features happened to lie beside it), only environment variables do."""
    tracked = subprocess.run(
        ["git", "ls-files", "tests", *PACKAGES], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip(f"not a git checkout: {tracked.stderr.strip()}")
    # A checkout in the system's temporary folder (as CI's clone may be) or at the top of the
    # file system (/src in a container) has a parent that paths name for other reasons (/tmp/ray,
    # every URL's //): the checkout itself is still checked there.
    shared = (Path(tempfile.gettempdir()), Path(ROOT.anchor))
    folders = [ROOT] + ([ROOT.parent] if ROOT.parent not in shared else [])
    offenders = [
        (name, str(folder))
        for name in tracked.stdout.splitlines()
        if (ROOT / name).is_file()
        for folder in folders
        if f"{folder}/" in (ROOT / name).read_text(errors="replace")
    ]
    assert not offenders, f"files naming this machine's folders: {offenders}"
