"""Limits checked before any work: a spec's size, its YAML aliases, the number of trials it
expands to (counted, not expanded), each trial's size budget; every malformed value one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.sweep import without_credentials
from orchestrator.errors import MAX_PROBLEM_CHARS
from orchestrator.plan import trial_name
from tests.helpers import cli_env

# Twelve settings with ten values each: 10^12 trials, which must be answered without expanding.
TRILLION = {
    "seed": list(range(10)),
    "optim.lr": [1e-3 * (i + 1) for i in range(10)],
    "optim.weight_decay": [0.01 * i for i in range(10)],
    "optim.batch_size": [2 ** (i + 2) for i in range(10)],
    "optim.epochs": [i + 1 for i in range(10)],
    "loss.temperature": [0.01 * (i + 1) for i in range(10)],
    "model.embed_dim": [8 * (i + 1) for i in range(10)],
    "data.n_train": [64 * (i + 1) for i in range(10)],
    "data.n_eval": [64 * (i + 1) for i in range(10)],
    "data.noise": [0.01 * i for i in range(10)],
    "eval.every_steps": [i + 1 for i in range(10)],
    "model.init.std": [0.01 * (i + 1) for i in range(10)],
}


def anchor_bomb(levels: int) -> str:
    """The "billion laughs": each level an alias list of ten of the level before."""
    lines = ["name: bomb", "base:", '  l0: &a0 ["lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


# Runs `orchestrator validate` and, as it exits, writes its peak resident memory (VmHWM, which
# starts afresh at exec: a child's rusage would also count the pytest process it forked from).
VALIDATE_AND_REPORT_PEAK = """
import atexit, sys
def peak():
    status = open("/proc/self/status").read()
    sys.stderr.write("peak_kb " + status.split("VmHWM:")[1].split()[0] + "\\n")
atexit.register(peak)
from orchestrator.cli import app
sys.argv = ["orchestrator", "validate", *sys.argv[1:]]
app()
"""


def validate_in_a_process(path: Path, *args: str) -> tuple[int, str, float]:
    """Exit code, stderr and peak memory (MB) of `orchestrator validate` as its own process."""
    done = subprocess.run(
        [sys.executable, "-c", VALIDATE_AND_REPORT_PEAK, str(path), *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.splitlines()
    peak = [line for line in lines if line.startswith("peak_kb ")]
    assert len(peak) == 1, done.stderr
    stderr = "\n".join(line for line in lines if not line.startswith("peak_kb "))
    return done.returncode, stderr, int(peak[0].split()[1]) / 1024


@pytest.mark.parametrize(
    "content",
    [{"name": "grid", "parameters": {p: {"grid": v} for p, v in TRILLION.items()}}, anchor_bomb(9)],
    ids=["10^12-point grid", "9-level anchor bomb"],
)
def test_huge_specs_are_refused_at_once_in_little_memory(
    content: dict[str, Any] | str, write_spec: Callable[..., Path]
) -> None:
    code, stderr, peak_mb = validate_in_a_process(write_spec(content))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "1,000,000,000,000 trials" in stderr or "more than 32 aliases" in stderr
    assert peak_mb < 200, f"validate held {peak_mb:.0f} MB"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nbase:\n  ? [1, 2]\n  : 3\n", "a key must be a plain value, not a list"),
        (
            "name: a\nsearch: random\nparameters:\n  loss.temperature: {uniform: [0, .inf]}\n",
            "uniform needs finite bounds",
        ),
        (
            "name: a\nsearch: random\nparameters:\n  optim.lr: {uniform: [-1.0e308, 1.0e308]}\n",
            "uniform needs finite bounds with a finite difference",
        ),
        (
            "name: a\nsearch: random\nparameters:\n  seed: {randint: [0, 100000000000000000000]}\n",
            "randint bounds must lie within",
        ),
        ("name: a\nparameters:\n  seed: {randint: [0, 1e30]}\n", "parameters.seed.randint.1"),
        ("name: '..'\n", "start with a letter or digit"),
        ("name: .\n", "start with a letter or digit"),
        ("name: -x\n", "start with a letter or digit"),
        (
            "name: a\nbase:\n  model: {image: {kind: cnn, channels: [1000000000]}}\n",
            "channels.0: Input should be less than or equal to 4096",
        ),
        (
            "name: a\nbase:\n  data: {name: gaussian, dim: 65536, n_train: 1000000}\n",
            "data: the gaussian data set would take about 489 GiB in memory",
        ),
        (
            "name: a\nbase:\n  model: {image: {kind: mlp, depth: 256, width: 16384}}\n",
            "model.image: a mlp tower of about 68.5 billion parameters is over the budget",
        ),
    ],
)
def test_malformed_values_get_one_line_and_exit_2(
    text: str, expected: str, write_spec: Callable[..., Path]
) -> None:
    result = CliRunner().invoke(app, ["validate", str(write_spec(text))])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert expected in lines[0]


def test_a_grid_over_the_budget_names_the_trial(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        {
            "name": "wide",
            "base": {"model": {"image": {"kind": "mlp", "depth": 64}}},
            "parameters": {"model.image.width": {"grid": [128, 8192]}, "seed": {"grid": [0, 1]}},
        }
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # the two seeds of the bad width: one problem
    assert "model.image: a mlp tower of about 4.24 billion" in lines[0]
    assert lines[0].endswith("(with model.image.width=8192)")
    assert "width=128)" not in result.output


def test_validate_and_plan_ask_for_yes_past_the_limit(write_spec: Callable[..., Path]) -> None:
    path = write_spec({"name": "many", "parameters": {"seed": {"grid": list(range(1001))}}})
    for command in ("validate", "plan"):
        refused = CliRunner().invoke(app, [command, str(path)])
        assert refused.exit_code == 2
        assert "1,001 trials, more than 1,000 (GAPSWEEP_MAX_TRIALS); pass --yes" in refused.output
    accepted = CliRunner().invoke(app, ["validate", str(path), "--yes"])
    assert accepted.exit_code == 0, accepted.output
    assert "1001 trials" in accepted.output


def test_a_spec_file_over_the_size_limit_is_not_read(write_spec: Callable[..., Path]) -> None:
    path = write_spec("name: big\ndescription: '" + "x" * 1_100_000 + "'\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "larger than 1,000,000 bytes" in result.output


def test_problem_lines_are_cut(write_spec: Callable[..., Path]) -> None:
    path = write_spec({"name": "long", "base": {"k" * 5000: 1}, "parameters": {"s" * 5000: {}}})
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) >= 2
    assert all(len(line) <= MAX_PROBLEM_CHARS + len("error: ") for line in lines)
    assert "characters, cut)" in result.output


def test_trial_names_fit_the_results_store_column() -> None:
    name = trial_name({"data.root": "d" * 800, "seed": 1})
    assert len(name) == 500
    assert name.endswith("...")
    assert trial_name({"seed": 1}) == "seed=1"


def test_mlflow_links_never_show_a_password() -> None:
    uri = "http://admin:s3cret@127.0.0.1:5000"
    assert without_credentials(uri) == "http://127.0.0.1:5000"
    assert without_credentials("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
