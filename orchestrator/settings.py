"""Where a sweep's services live and how a submit behaves: the one settings object each command
builds from its options and hands to the library. The defaults are relative to the working
directory, so that `mlflow ui` run there just works."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
DEFAULT_RESULTS_DB = "sqlite:///results.db"
DEFAULT_STORAGE = Path("runs")
# A sweep larger than this runs only with --yes (GAPSWEEP_MAX_TRIALS sets it).
MAX_TRIALS_WITHOUT_YES = int(os.environ.get("GAPSWEEP_MAX_TRIALS", "1000"))
# No sweep is larger than this, --yes or not: planning holds every trial's config in memory
# (about 100,000 take a minute and a few hundred MB). GAPSWEEP_TRIAL_CAP sets it.
TRIAL_CAP = int(os.environ.get("GAPSWEEP_TRIAL_CAP", "100000"))


@dataclass(frozen=True)
class Services:
    mlflow_uri: str = DEFAULT_MLFLOW_URI
    results_db: str = DEFAULT_RESULTS_DB
    storage: Path = DEFAULT_STORAGE  # Ray Tune's storage folder
    address: str | None = None  # a Ray cluster; a local Ray is started on demand when None


@dataclass(frozen=True)
class SubmitSettings:
    services: Services = field(default_factory=Services)
    rerun_failed: bool = False  # also run trials that failed before
    yes: bool = False  # run a sweep larger than MAX_TRIALS_WITHOUT_YES
    report_dir: Path | None = None  # write the HTML report here at the end
    new_version: bool = False  # a changed spec starts the sweep's next version (versions.py)


def positive_setting(name: str, default: float) -> float:
    """A positive number from the environment variable `name`, else `default`; InputError
    naming a value that is not one."""
    return _number_setting(name, default, zero_allowed=False)


def non_negative_setting(name: str, default: float) -> float:
    """As `positive_setting`, 0 allowed."""
    return _number_setting(name, default, zero_allowed=True)


def _number_setting(name: str, default: float, zero_allowed: bool) -> float:
    from orchestrator.errors import InputError

    given = os.environ.get(name)
    if given is None:
        return default
    try:
        value = float(given)
    except ValueError:
        value = -1.0
    if not (value >= 0 if zero_allowed else value > 0) or value == float("inf"):
        kind = "non-negative" if zero_allowed else "positive"
        raise InputError(f"{name}={given!r} is not a {kind} number")
    return value
