"""Metric names that say what they count (docs/metrics.md): instance- against class-level
recall@1 and the nearest-centroid accuracy against NumPy, the data sets' retrieval ids, and
sweeps stored under the old names read back through the real CLI under the new ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial
from tests.helpers import orchestrator
from trainers.config import DigitsDataConfig, ShapesDataConfig
from trainers.data.digits import make_digits
from trainers.data.paired import PairedSplit
from trainers.data.shapes import make_shapes
from trainers.evaluate import Embeddings, evaluate, recall_at_1, retrieval

# Six pairs of three classes; pairs 4 and 5 share one caption text, so they are copies.
LABELS = np.array([0, 0, 1, 1, 2, 2])
MATCH = np.array([0, 1, 2, 3, 4, 4])
# Row i: tower a's item i against tower b's items. Row 0 finds its own pair; row 1 another of
# its class; row 2 a pair of another class; row 3 its own; row 4 the copy of its caption; row 5
# another class. Columns, read as b -> a queries, mix the same cases differently.
SIM = np.array(
    [
        [0.9, 0.1, 0.0, 0.2, 0.1, 0.0],
        [0.8, 0.3, 0.1, 0.0, 0.2, 0.1],
        [0.1, 0.0, 0.2, 0.1, 0.7, 0.3],
        [0.0, 0.2, 0.4, 0.6, 0.1, 0.0],
        [0.1, 0.0, 0.2, 0.3, 0.4, 0.5],
        [0.2, 0.1, 0.6, 0.1, 0.3, 0.4],
    ]
)


def numpy_recall(sim: np.ndarray, ids: np.ndarray) -> float:
    """Recall@1 with a loop: row i's best column j is a hit when ids[j] == ids[i]."""
    hits = [ids[int(np.argmax(row))] == ids[i] for i, row in enumerate(sim)]
    return sum(hits) / len(hits)


def test_instance_and_class_recall_equal_an_independent_numpy_computation() -> None:
    expected = {
        "recall_at_1_a2b": numpy_recall(SIM, MATCH),
        "recall_at_1_b2a": numpy_recall(SIM.T, MATCH),
        "class_recall_at_1_a2b": numpy_recall(SIM, LABELS),
        "class_recall_at_1_b2a": numpy_recall(SIM.T, LABELS),
    }
    # The matrix tells the two levels apart: rows 0, 3 and 4 find their own pair (row 4 its
    # caption's copy), row 1 only its class; rows 2 and 5 miss both.
    assert expected["recall_at_1_a2b"] == pytest.approx(3 / 6)
    assert expected["class_recall_at_1_a2b"] == pytest.approx(4 / 6)
    sim, match, labels = torch.tensor(SIM), torch.tensor(MATCH), torch.tensor(LABELS)
    assert retrieval(sim, match, labels) == pytest.approx(expected)
    assert recall_at_1(sim, match) == pytest.approx(expected["recall_at_1_a2b"])
    assert set(retrieval(sim, match, None)) == {"recall_at_1_a2b", "recall_at_1_b2a"}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_without_prompts_a_trial_reports_the_nearest_centroid_accuracy_not_zero_shot() -> None:
    rng = np.random.default_rng(0)
    n, d, classes = 60, 8, 3
    labels = rng.integers(classes, size=n)
    centres = rng.normal(size=(classes, d))
    a = unit(centres[labels] + rng.normal(size=(n, d)))
    b = unit(centres[labels] + rng.normal(size=(n, d)))
    means = unit(np.stack([b[labels == k].mean(axis=0) for k in range(classes)]))
    split = PairedSplit(
        torch.tensor(a).float(),
        torch.tensor(b).float(),
        torch.arange(n),
        labels=torch.from_numpy(labels),
    )
    emb = Embeddings(torch.tensor(a).float(), torch.tensor(b).float())
    metrics = evaluate(emb, split, None, torch.tensor(10.0), 16)
    assert "zero_shot_acc" not in metrics  # no prompts: nothing is zero-shot here
    expected = float(np.mean(np.argmax(a @ means.T, axis=1) == labels))
    assert metrics["centroid_acc"] == pytest.approx(expected, abs=1e-6)
    assert metrics["class_recall_at_1_a2b"] == pytest.approx(numpy_recall(a @ b.T, labels))


@pytest.mark.parametrize("data", ["digits", "shapes"])
def test_instance_recall_counts_the_same_caption_text_not_its_class(data: str) -> None:
    if data == "digits":
        split = make_digits(DigitsDataConfig(n_train=60, n_eval=200), seed=0).eval
    else:
        split = make_shapes(ShapesDataConfig(n_train=8, n_eval=200, image_size=16), seed=0).eval
    assert split.b_texts is not None and split.labels is not None
    _, by_text = np.unique(np.asarray(split.b_texts), return_inverse=True)
    assert np.array_equal(split.match_ids.numpy(), by_text)
    assert len(np.unique(by_text)) > len(np.unique(split.labels.numpy()))


SWEEP = "legacy"


def stored_before_the_rename(url: str) -> dict[str, float]:
    """A digits sweep recorded before the rename: its recall_at_1_* counted any item of the
    query's class, and there is no class_recall_at_1_*. Returns recall_at_1_a2b by key."""
    recall = {"k1": 0.8, "k2": 0.6, "k3": 0.7}
    temperature = {"k1": 0.01, "k2": 0.01, "k3": 0.1}
    with ResultsStore(url) as store:
        store.upsert_sweep(SWEEP, "dual_encoder", "name: legacy\n", "h", ("recall_at_1_a2b", "max"))
        store.register_trials(
            SWEEP,
            [
                NewTrial(
                    key,
                    f"t={temperature[key]}",
                    i,
                    {"data": {"name": "digits"}, "loss": {"temperature": temperature[key]}},
                    {"loss.temperature": temperature[key]},
                )
                for i, key in enumerate(recall)
            ],
        )
        for key, value in recall.items():
            store.mark_running(SWEEP, key, None, None)
            metrics = {"recall_at_1_a2b": value, "recall_at_1_b2a": 0.5, "zero_shot_acc": 0.9}
            store.finish_trial(SWEEP, key, "completed", metrics)
    return recall


def test_a_sweep_stored_under_old_names_reads_under_the_new_ones(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    recall = stored_before_the_rename(url)
    env = {"ORCHESTRATOR_RESULTS_DB": url}

    listed = orchestrator("results", SWEEP, "--format", "json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    records = {r["key"]: r["metrics"] for r in json.loads(listed.stdout)}
    assert {k: m["class_recall_at_1_a2b"] for k, m in records.items()} == recall
    assert not any("recall_at_1_a2b" in m for m in records.values())
    assert listed.stderr.count("recall_at_1_a2b as class_recall_at_1_a2b") == 1

    table = orchestrator("results", SWEEP, "--metric", "class_recall_at_1_a2b", cwd=tmp_path, **env)
    assert table.returncode == 0, table.stderr
    assert "class_recall_at_1_a2b ▲" in table.stdout and "0.8" in table.stdout

    for asked in ("class_recall_at_1_a2b", "recall_at_1_a2b"):  # the new name, and the old one
        compared = orchestrator(
            "compare", SWEEP, "--by", "loss.temperature", "--metric", asked, cwd=tmp_path, **env
        )
        assert compared.returncode == 0, compared.stderr
        assert "class_recall_at_1_a2b by loss.temperature" in compared.stdout
        assert "0.7000" in compared.stdout  # the mean of 0.8 and 0.6 at τ = 0.01
    assert "recall_at_1_a2b: read as class_recall_at_1_a2b" in compared.stderr


def test_the_report_of_an_old_sweep_says_how_it_read_its_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    stored_before_the_rename(url)
    out = tmp_path / "report"
    made = orchestrator(
        "report", SWEEP, "--out", str(out), "--no-mlflow", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=url
    )
    assert made.returncode == 0, made.stderr
    page = (out / "index.html").read_text()
    assert "metric class_recall_at_1_a2b (max)" in page
    assert "recall_at_1_a2b as class_recall_at_1_a2b" in page
    assert "recall_at_1_a2b as class_recall_at_1_a2b" in made.stderr
