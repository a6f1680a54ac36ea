"""A labelled folder as the evaluation set of a trial that trains on captions (`eval.folder`):
the folder metrics against NumPy, a tiny CLIP fine-tuned on a caption folder reporting them at
every evaluation (at step 0 equal to transformers' own CLIP on the same files), the frozen
towers' folder embeddings reused, and what the setting refuses. The shipped spec that uses it
(clip_temperature.yaml) runs in tests/test_clip_pretrained.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.clip_fixture import (
    IMAGE_SIZE,
    save_caption_folder,
    save_labelled_folder,
    save_tiny_clip,
)
from trainers.config import TrialConfig
from trainers.data.image_folder import class_folders, class_name
from trainers.dual_encoder import train_dual_encoder
from trainers.evaluate_folder import folder_scores
from trainers.reports import FOLDER_METRICS

Files = tuple[Path, Path, Path]  # the CLIP folder, the captions CSV, the labelled folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("eval_folder")
    return (
        save_tiny_clip(root / "clip"),
        save_caption_folder(root / "coco", 48),
        save_labelled_folder(root / "labelled", per_class=4, size=IMAGE_SIZE),
    )


def numpy_folder_metrics(
    images: np.ndarray, labels: np.ndarray, prompts: np.ndarray, prompt_class: np.ndarray
) -> dict[str, float]:
    """Independent of trainers/: CLIP's prompt ensemble (a class is the normalised mean of its
    prompts), the nearest class, and each image's gap to its class embedding."""
    means = np.stack(
        [prompts[prompt_class == k].mean(axis=0) for k in range(prompt_class.max() + 1)]
    )
    classes = means / np.linalg.norm(means, axis=1, keepdims=True)
    paired = classes[labels]
    centre_a, centre_b = images.mean(axis=0), paired.mean(axis=0)
    return {
        "folder_zero_shot_acc": float(np.mean((images @ classes.T).argmax(axis=1) == labels)),
        "folder_gap_norm": float(np.linalg.norm(centre_a - centre_b)),
        "folder_centroid_cosine": float(
            centre_a @ centre_b / (np.linalg.norm(centre_a) * np.linalg.norm(centre_b))
        ),
        "folder_paired_cosine": float(np.mean(np.sum(images * paired, axis=1))),
    }


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_folder_metrics_against_numpy() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 6))
    labels = rng.integers(0, 4, size=50)
    prompt_class = rng.permutation(np.repeat(np.arange(4), 3))  # prompts of a class not adjacent
    images = unit(centres[labels] + rng.normal(scale=1.5, size=(50, 6)))
    prompts = unit(centres[prompt_class] + rng.normal(scale=1.0, size=(12, 6)))
    as_tensor = [torch.from_numpy(x) for x in (images, labels, prompts, prompt_class)]
    got = folder_scores(as_tensor[0].float(), as_tensor[1], as_tensor[2].float(), as_tensor[3])
    expected = numpy_folder_metrics(images, labels, prompts, prompt_class)
    assert 0.4 < expected["folder_zero_shot_acc"] < 1.0  # neither chance nor trivial
    assert got == pytest.approx(expected, abs=1e-5)
    assert set(got) == set(FOLDER_METRICS)


def trial(files: Files, **eval_folder: Any) -> dict[str, Any]:
    clip, captions, labelled = files
    folder = {"root": str(labelled), "n_eval": 12, "image_size": IMAGE_SIZE, "loader_workers": 0}
    return {
        "data": {"name": "image_text", "captions": str(captions), "n_eval": 16,
                 "image_size": IMAGE_SIZE, "loader_workers": 0},
        "model": {"image": {"kind": "clip_pretrained", "path": str(clip)},
                  "text": {"kind": "clip_pretrained"}},
        "optim": {"batch_size": 16, "epochs": 2, "lr": 1e-3},
        "eval": {"every_steps": 2, "folder": folder | eval_folder},
    }  # fmt: skip


def test_a_clip_trained_on_captions_reports_the_folder_at_every_evaluation(files: Files) -> None:
    reports: list[tuple[int, dict[str, float]]] = []
    config = TrialConfig.model_validate(trial(files))
    train_dual_encoder(config, lambda step, metrics: reports.append((step, metrics)))
    assert [step for step, _ in reports] == [0, 2, 4]  # 32 training images, batch 16, 2 epochs
    for _, metrics in reports:
        assert set(FOLDER_METRICS) <= set(metrics) and "zero_shot_acc" not in metrics
        assert 0.0 <= metrics["folder_zero_shot_acc"] <= 1.0
    assert reports[-1][1]["folder_gap_norm"] != reports[0][1]["folder_gap_norm"]  # it trained
    folder_at_init = {name: reports[0][1][name] for name in FOLDER_METRICS}
    assert folder_at_init == pytest.approx(transformers_reference(files), abs=1e-4)


def transformers_reference(files: Files) -> dict[str, float]:
    """The folder metrics of the untrained CLIP from transformers' own CLIPModel, image
    processor and tokenizer on the folder's files (all 12 are held out), then NumPy."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    clip, _, labelled = files
    folders = class_folders(labelled)
    paths = [(p, k) for k, f in enumerate(folders) for p in sorted(f.glob("*.png"))]
    names = [class_name(f) for f in folders]
    templates = TrialConfig.model_validate(trial(files)).eval.folder.templates  # type: ignore[union-attr]
    prompts = [t.format(name) for name in names for t in templates]
    model = CLIPModel.from_pretrained(str(clip), local_files_only=True).eval()
    pixels = CLIPImageProcessor.from_pretrained(str(clip))(
        [Image.open(p).convert("RGB") for p, _ in paths], return_tensors="pt"
    )
    tokens = AutoTokenizer.from_pretrained(str(clip))(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        images = _features(model.get_image_features(pixel_values=pixels["pixel_values"]))
        texts = _features(model.get_text_features(**tokens))
    return numpy_folder_metrics(
        unit(images.double().numpy()),
        np.array([k for _, k in paths]),
        unit(texts.double().numpy()),
        np.repeat(np.arange(len(names)), len(templates)),
    )


def _features(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def test_frozen_towers_embed_the_folder_once(files: Files, private_cache: Path) -> None:
    config = TrialConfig.model_validate(trial(files) | {"optim": {"epochs": 0, "batch_size": 16}})
    stored = private_cache / "embeddings"
    before = set(stored.glob("*.pt")) if stored.is_dir() else set()
    first = train_dual_encoder(config, lambda step, metrics: None).metrics
    made = set(stored.glob("*.pt")) - before
    assert len(made) == 2  # the caption pairs' eval embeddings, and the folder's
    again = train_dual_encoder(config, lambda step, metrics: None).metrics
    assert set(stored.glob("*.pt")) - before == made
    assert {m: again[m] for m in FOLDER_METRICS} == {m: first[m] for m in FOLDER_METRICS}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"data": {"name": "gaussian"}}, "needs a trial on images with captions"),
        ({"folder": {"image_size": 16}}, "set eval.folder.image_size=24"),  # a CNN reads 24 px
        ({"folder": {"n_train": 8}}, "folder.n_train: the evaluation folder trains nothing"),
    ],
)
def test_a_folder_the_trial_cannot_read_is_refused(
    files: Files, change: dict[str, Any], fragment: str
) -> None:
    folder = {"root": str(files[2]), "image_size": 24} | change.pop("folder", {})
    with pytest.raises(ValueError, match=fragment):
        TrialConfig.model_validate({"eval": {"folder": folder}} | change)


def test_without_a_folder_the_config_dumps_as_before() -> None:
    assert "folder" not in TrialConfig().model_dump()["eval"]
