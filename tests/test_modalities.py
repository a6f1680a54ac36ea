"""The paper's Figure 1 across modality pairs: every pair of sweeps/modalities.yaml shows a gap at
random initialisation, and a sweep over pairs reports a gap bar chart and 2-D maps per pair."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.plan import expand
from orchestrator.spec import load_spec
from tests.helpers import NEEDS_ESPEAK, orchestrator
from trainers.config import TrialConfig
from trainers.config.pairs import PAIRS
from trainers.dual_encoder import train_dual_encoder

SWEEP = Path(__file__).parents[1] / "sweeps" / "modalities.yaml"


def test_modalities_sweep_covers_every_pair_at_init_and_trained() -> None:
    plan = expand(load_spec(SWEEP))
    cells = {(t.varied["pair"], t.varied["optim.epochs"]) for t in plan.trials}
    epochs = {e for _, e in cells}
    assert 0 in epochs and len(epochs) == 2
    assert cells == {(p, e) for p in PAIRS for e in epochs}
    assert all(
        isinstance(t.config, TrialConfig) and t.config.loss.temperature == 0.01 for t in plan.trials
    )


@NEEDS_ESPEAK
def test_every_pair_has_a_gap_at_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Figure 1 (b-c): at random init the two towers of every model family sit apart."""
    monkeypatch.setenv("GAPSWEEP_CACHE_DIR", str(tmp_path))
    at_init = [
        t for t in expand(load_spec(SWEEP)).trials
        if t.varied["optim.epochs"] == 0 and t.varied["seed"] == 0
    ]  # fmt: skip
    gaps = {}
    for trial in at_init:
        assert isinstance(trial.config, TrialConfig)
        result = train_dual_encoder(trial.config, lambda step, metrics: None)
        gaps[trial.varied["pair"]] = result.metrics["gap_norm"]
    assert set(gaps) == set(PAIRS)
    assert all(gap > 0.5 for gap in gaps.values()), gaps


@NEEDS_ESPEAK
@pytest.mark.slow
def test_sweep_over_pairs_reports_gap_per_pair_and_maps(tmp_path: Path) -> None:
    spec = {
        "name": "tiny_pairs",
        "base": {
            "data": {"n_train": 64, "n_eval": 32},
            "model": {"embed_dim": 8},
            "loss": {"temperature": 0.01},
            "optim": {"batch_size": 16, "epochs": 1},
            "eval": {"every_steps": 2},
        },
        "parameters": {
            "pair": {"grid": ["clip_like", "speech_text", "graph_text"]},
            "optim.epochs": {"grid": [0, 1]},
        },
        "metric": {"name": "gap_norm", "mode": "min"},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    cache = str(tmp_path / "cache")
    result = orchestrator(
        "submit", "spec.yaml", "--report", "report", cwd=tmp_path, GAPSWEEP_CACHE_DIR=cache
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = {p.name for p in (tmp_path / "report").glob("*.png")}
    assert {"gap_norm_by_pair.png", "modality_map.png"} <= figures
    page = (tmp_path / "report" / "index.html").read_text()
    assert "final gap_norm per pair" in page and "both modalities in 2-D, per pair" in page
    assert page.count("<tr>") == 1 + 6  # header and one row per trial
