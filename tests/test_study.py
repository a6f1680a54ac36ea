"""The study's searcher against a real SQLite results store, driven as Tune drives it (suggest,
then on_trial_complete), without training: a rebuilt QMC study draws on instead of redrawing
its points, and a config an earlier version of the sweep completed is answered from the
store, never run again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from orchestrator.spec import SweepSpec
from orchestrator.store.repository import ResultsStore
from orchestrator.study import StudyRecords, StudySearcher
from tests.conftest import TINY_BASE

SWEEP = "study"


def spec(**keys: Any) -> SweepSpec:
    data = {
        "name": SWEEP,
        "base": TINY_BASE,
        "search": "optuna",
        "metric": {"name": "gap_norm", "mode": "min"},
        **keys,
    }
    return SweepSpec.model_validate(data)


def searcher(store: ResultsStore, drawn: SweepSpec, version: int) -> StudySearcher:
    """A searcher as a (new) driver makes one, from what the store holds of the version."""
    held = store.versions.get(SWEEP)
    keys = list(held.keys) if held is not None and held.number == version else []
    store.versions.record(SWEEP, version, (f"h{version}", "name: study", None), keys)
    records = StudyRecords(store, SWEEP, (version, (f"h{version}", "name: study", None)), keys,
                           lambda trial: None)  # fmt: skip
    stored = [t for t in store.trials(SWEEP) if t.key in set(keys)]
    return StudySearcher(drawn, stored, records)


def run(store: ResultsStore, found: StudySearcher, count: int, start: int) -> list[str]:
    """`count` suggestions, each completed at once with a stored gap; their keys."""
    keys = []
    for n in range(start, start + count):
        suggestion = found.suggest(f"t{n}")
        assert isinstance(suggestion, dict), suggestion
        key = suggestion["trial_key"]
        store.mark_running(SWEEP, key, None, None)
        metrics = {"gap_norm": 1.0 / (n + 1)}
        store.finish_trial(SWEEP, key, "completed", metrics)
        found.on_trial_complete(f"t{n}", {"step": 0, **metrics})
        keys.append(key)
    return keys


def test_a_rebuilt_qmc_study_draws_new_points_within_its_budget(tmp_path: Path) -> None:
    drawn = spec(sampler="qmc", num_samples=6,
                 parameters={"loss.temperature": {"loguniform": [0.01, 1.0]}})  # fmt: skip
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        store.upsert_sweep(SWEEP, "dual_encoder", "name: study", "h1", ("gap_norm", "min"))
        first = run(store, searcher(store, drawn, 1), 3, 0)
        again = searcher(store, drawn, 1)  # the driver died; the next one rebuilds the study
        second = run(store, again, 3, 3)
        assert again.suggest("t9") == Searcher.FINISHED  # the budget of 6 is spent
        assert len(set(first + second)) == 6
        assert {t.attempts for t in store.trials(SWEEP)} == {1}


def test_a_config_an_earlier_version_completed_is_not_run_again(tmp_path: Path) -> None:
    one_config = {"loss.temperature": {"choice": [0.05]}}  # every suggestion is the same trial
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        store.upsert_sweep(SWEEP, "dual_encoder", "name: study", "h1", ("gap_norm", "min"))
        (key,) = run(store, searcher(store, spec(num_samples=1, parameters=one_config), 1), 1, 0)
        later = searcher(store, spec(num_samples=3, parameters=one_config), 2)
        assert later.suggest("t5") == Searcher.FINISHED  # answered from the store, every time
        assert store.trial(SWEEP, key).attempts == 1 and store.trial(SWEEP, key).metrics
