"""The files each trial leaves in MLflow: its resolved config, its final metrics, a sample of its
final embeddings, and a picture of both modalities in 2-D with the gap vector (which the sweep
report draws too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from orchestrator.store.views import TrialView

EMBEDDING_SAMPLE = 1000  # rows per modality: enough for the picture and for re-analysis


# In a trial's final checkpoint: its embedding artifacts, drawn by its worker (`draw_beside`), so
# that the driver only uploads them. Checkpoints from before have none; the driver draws those.
DRAWN_DIR = "artifacts"


def write_trial_artifacts(view: TrialView, folder: Path) -> list[Path]:
    """Write the trial's artifacts into `folder`; the embedding files only when it saved some
    (those its worker drew are taken from its checkpoint as they are)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(view.config, sort_keys=False))
    metrics = folder / "metrics.json"
    summary = {"key": view.key, "status": view.status, "metrics": view.metrics}
    metrics.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if view.checkpoint_path is None:
        return [config, metrics]
    checkpoint = Path(view.checkpoint_path)
    drawn = checkpoint / DRAWN_DIR
    if drawn.is_dir():
        return [config, metrics, *sorted(p for p in drawn.iterdir() if p.is_file())]
    return [config, metrics, *_embedding_artifacts(checkpoint, view.name, folder)]


def draw_beside(checkpoint: Path, title: str) -> None:
    """In a worker: the embedding artifacts of a checkpoint that holds the trial's final
    embeddings, drawn into its DRAWN_DIR (the picture alone takes the driver half a second a
    trial, which thousands of small trials cannot spare)."""
    _embedding_artifacts(checkpoint, title, checkpoint / DRAWN_DIR)


def _embedding_artifacts(checkpoint: Path, title: str, folder: Path) -> list[Path]:
    from trainers.checkpoint import EMBEDDINGS_FILE, load_embeddings
    from trainers.errors import DataError

    if not (checkpoint / EMBEDDINGS_FILE).is_file():
        return []
    try:
        arrays = load_embeddings(checkpoint)
    except DataError:
        return []  # a damaged file costs the picture, not the trial's other artifacts
    folder.mkdir(parents=True, exist_ok=True)
    written = _prompts(arrays, folder, "", "prompts.json")
    written += _prompts(arrays, folder, "folder_", "folder_prompts.json")
    sample = {k: np.asarray(v)[:EMBEDDING_SAMPLE] for k, v in arrays.items()}
    npz = folder / "embeddings_sample.npz"
    np.savez_compressed(npz, **sample)  # type: ignore[arg-type]
    written.append(npz)
    figure = modality_map({title: sample})
    if figure is not None:
        png = folder / "modalities_2d.png"
        figure.savefig(png, dpi=110, bbox_inches="tight")
        written.append(png)
    return written


def _prompts(arrays: dict[str, np.ndarray], folder: Path, prefix: str, name: str) -> list[Path]:
    """The zero-shot prompts behind each class embedding, by class name: prompts.json for the
    data set's classes, folder_prompts.json for those of `eval.folder`."""
    wanted = [f"{prefix}{part}" for part in ("class_names", "class_prompts", "prompt_class")]
    if not set(wanted) <= set(arrays):
        return []
    names, texts, owners = (arrays[w].tolist() for w in wanted)
    by_class: dict[str, list[str]] = {str(n): [] for n in names}
    for text, owner in zip(texts, owners, strict=True):
        by_class[str(names[owner])].append(str(text))
    out = folder / name
    out.write_text(json.dumps(by_class, indent=2) + "\n")
    return [out]


def modality_map(embeddings: dict[str, dict[str, np.ndarray]]) -> Figure | None:
    """Both modalities of each chosen trial in 2-D (their joint first two principal components),
    with matched pairs joined, as in the paper's Figure 1."""
    if not embeddings:
        return None
    fig = Figure(figsize=(4 * len(embeddings), 4))
    axes = np.atleast_1d(fig.subplots(1, len(embeddings)))
    for ax, (name, arrays) in zip(axes, embeddings.items(), strict=True):
        draw_modality_map(ax, name, arrays)
    return fig


def draw_modality_map(ax: Any, title: str, arrays: dict[str, np.ndarray]) -> None:
    """One trial's embeddings on `ax`: both towers' points, matched pairs joined, gap vector."""
    a, b = arrays["a"][:300].astype(np.float64), arrays["b"][:300].astype(np.float64)
    both = np.concatenate([a, b])
    centred = both - both.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    pa, pb = xy[: len(a)], xy[len(a) :]
    for i in range(min(len(a), 40)):
        ax.plot([pa[i, 0], pb[i, 0]], [pa[i, 1], pb[i, 1]], color="grey", lw=0.3)
    ax.scatter(pa[:, 0], pa[:, 1], s=6, label="tower a", color="tab:red")
    ax.scatter(pb[:, 0], pb[:, 1], s=6, label="tower b (text)", color="tab:blue")
    # The gap vector: from the centroid of b to the centroid of a, in the same projection.
    ca, cb = pa.mean(axis=0), pb.mean(axis=0)
    ax.annotate(
        "",
        xy=(ca[0], ca[1]),
        xytext=(cb[0], cb[1]),
        arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.5},
    )
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
