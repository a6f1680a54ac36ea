"""Spec versions: a sweep resubmitted under the same name with a changed spec.

A changed spec that keeps every trial of the sweep's latest version and adds some (an extended
grid, a new seed) stays that version: the old trials count, the new ones run. Any other change
(a base setting, a dropped value) would mix two experiments under one name, so it is refused
with the fields that changed and the two ways out: `--new-version`, which starts the next
version of the sweep, or a new name. Readers show the latest version unless asked for another.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputError
from orchestrator.overrides import with_overrides
from orchestrator.plan import flatten
from orchestrator.spec_file import parse_spec_yaml

if TYPE_CHECKING:  # the store imports SQLAlchemy
    from orchestrator.plan import Plan
    from orchestrator.spec import LoadedSpec
    from orchestrator.store.repository import ResultsStore
    from orchestrator.store.versions import SpecVersion

DIFF_SHOWN = 4  # changed fields named in the refusal; the rest are counted
BUDGET_FIELDS = ("num_samples:", "description:")  # what an Optuna study may change and stay


def choose_version(store: ResultsStore, loaded: LoadedSpec, plan: Plan, new_version: bool) -> int:
    """The version of the sweep this submit runs (recorded by the caller once the sweep's row
    is written); an InputError when the spec changed the sweep's trials without `new_version`."""
    latest = store.versions.get(plan.spec.name)
    if latest is None:
        return 1
    if new_version and latest.spec_hash != loaded.spec_hash:
        return latest.number + 1  # the same spec again is the same version: nothing new
    if plan.spec.search == "optuna":
        # A study's trials are drawn as it runs: it stays the same study while only its budget
        # (or its description) changes.
        changed = spec_diff(latest.spec_text, latest.overrides, loaded.text, loaded.overrides)
        if any(not line.startswith(BUDGET_FIELDS) for line in changed):
            raise InputError(refusal(plan.spec.name, latest, loaded))
    elif not set(latest.keys) <= {t.key for t in plan.trials}:
        raise InputError(refusal(plan.spec.name, latest, loaded))
    return latest.number  # the same spec, or one that only adds trials


def refusal(sweep: str, latest: SpecVersion, loaded: LoadedSpec) -> str:
    changed = spec_diff(latest.spec_text, latest.overrides, loaded.text, loaded.overrides)
    shown = "; ".join(changed[:DIFF_SHOWN]) or "its trials differ"
    if len(changed) > DIFF_SHOWN:
        shown += f"; and {len(changed) - DIFF_SHOWN} more"
    return (
        f"sweep {sweep!r} (version {latest.number}) was submitted with another spec, and this one "
        f"does not only add trials ({shown}): submit with --new-version to start version "
        f"{latest.number + 1} of {sweep!r}, or give the sweep a new name"
    )


def spec_diff(
    old_text: str, old_overrides: dict[str, Any], new_text: str, new_overrides: dict[str, Any]
) -> list[str]:
    """`path: old -> new` for each field that differs between two specs as written (with their
    `--set` overrides), in path order."""
    old = flatten(_written(old_text, old_overrides))
    new = flatten(_written(new_text, new_overrides))
    return [
        f"{path}: {_shown(old.get(path))} -> {_shown(new.get(path))}"
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]


def _written(text: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return with_overrides(parse_spec_yaml(text, Path("<spec>")), overrides)


def _shown(value: Any) -> str:
    text = "(unset)" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
