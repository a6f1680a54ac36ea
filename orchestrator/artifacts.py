"""The files each trial leaves in MLflow: its resolved config, its final metrics, a sample of its
final embeddings, and a picture of both modalities in 2-D with the gap vector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from orchestrator.store.repository import TrialView

EMBEDDING_SAMPLE = 1000  # rows per modality: enough for the picture and for re-analysis


def write_trial_artifacts(view: TrialView, folder: Path) -> list[Path]:
    """Write the trial's artifacts into `folder`; the embedding files only when it saved some."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(view.config, sort_keys=False))
    metrics = folder / "metrics.json"
    summary = {"key": view.key, "status": view.status, "metrics": view.metrics}
    metrics.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return [config, metrics, *_embedding_artifacts(view, folder)]


def _embedding_artifacts(view: TrialView, folder: Path) -> list[Path]:
    from orchestrator.report_figures import modality_map
    from trainers.checkpoint import EMBEDDINGS_FILE, load_embeddings
    from trainers.errors import DataError

    if view.checkpoint_path is None or not (Path(view.checkpoint_path) / EMBEDDINGS_FILE).is_file():
        return []
    try:
        arrays = load_embeddings(Path(view.checkpoint_path))
    except DataError:
        return []  # a damaged file costs the picture, not the trial's other artifacts
    sample = {k: np.asarray(v)[:EMBEDDING_SAMPLE] for k, v in arrays.items()}
    npz = folder / "embeddings_sample.npz"
    np.savez_compressed(npz, **sample)  # type: ignore[arg-type]
    figure = modality_map({view.name: sample})
    if figure is None:
        return [npz]
    png = folder / "modalities_2d.png"
    figure.savefig(png, dpi=110, bbox_inches="tight")
    return [npz, png]
