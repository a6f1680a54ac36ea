"""Frozen towers embed the eval data once for all the trials that share them: the second trial
reads what the first left on disk, a changed model or data set makes a new entry, and towers
that train never use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import TINY_BASE
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.embedding_cache import cache_folder


def run(**changes: Any) -> dict[str, float]:
    raw = {**TINY_BASE, "optim": {**TINY_BASE["optim"], "epochs": 0}} | changes
    return train_dual_encoder(TrialConfig.model_validate(raw), lambda s, m: None).metrics


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GAPSWEEP_CACHE_DIR", str(tmp_path))
    return cache_folder()


def test_a_second_trial_on_the_same_frozen_towers_reads_the_first_ones_embeddings(
    cache: Path,
) -> None:
    first = run(loss={"temperature": 0.1})
    (entry,) = cache.glob("*.pt")
    # Another temperature: the same towers and data, so the same entry. Its tower-a embeddings
    # are replaced here by tower b's, which a trial that read the entry reports as no gap.
    stored = torch.load(entry, weights_only=True)
    torch.save({**stored, "a": stored["b"]}, entry)
    second = run(loss={"temperature": 0.5})
    assert list(cache.glob("*.pt")) == [entry]
    assert first["gap_norm"] > 0.1 and second["gap_norm"] == pytest.approx(0.0, abs=1e-6)


def test_another_model_or_data_set_is_another_entry(cache: Path) -> None:
    base = run()
    same = run(seed=TrialConfig().seed)  # written out, still the same trial
    other_init = run(model={**TINY_BASE["model"], "init": {"seed": 7}})
    other_data = run(data={**TINY_BASE["data"], "n_eval": 48})
    assert same == base
    assert other_init["gap_norm"] != base["gap_norm"]
    assert other_data["gap_norm"] != base["gap_norm"]
    assert len(list(cache.glob("*.pt"))) == 3


def test_towers_that_train_are_never_cached(cache: Path) -> None:
    raw = {**TINY_BASE, "optim": {**TINY_BASE["optim"], "epochs": 1}}
    train_dual_encoder(TrialConfig.model_validate(raw), lambda s, m: None)
    assert not cache.exists() or not list(cache.glob("*.pt"))


def test_an_unreadable_entry_is_computed_again(cache: Path) -> None:
    base = run()
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(b"torn")
    assert run() == base
    assert torch.load(entry, weights_only=True)["a"].shape[0] == TINY_BASE["data"]["n_eval"]
