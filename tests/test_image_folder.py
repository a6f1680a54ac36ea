"""The labelled image folder (ImageFolder layout): PNG files written by the test, the pairs and
prompts it makes, and zero-shot of a pretrained CLIP on it through `orchestrator submit`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.store.repository import ResultsStore
from tests.clip_fixture import save_labelled_folder, save_tiny_clip
from tests.helpers import orchestrator
from trainers.config import ImageFolderDataConfig
from trainers.data.image_folder import make_image_folder
from trainers.errors import DataError


def test_pairs_captions_and_prompts_of_a_labelled_folder(tmp_path: Path) -> None:
    root = save_labelled_folder(tmp_path / "folder", per_class=10)
    config = ImageFolderDataConfig(root=str(root), n_eval=9, image_size=16)
    data = make_image_folder(config, seed=0)
    assert data.class_names == ("blue square", "green", "red square")  # sorted, _ as space
    assert len(data.train) == 21 and len(data.eval) == 9
    assert data.eval.labels is not None and data.train.b_texts is not None
    for label, caption in zip(data.train.labels.tolist(), data.train.b_texts, strict=True):
        assert caption.rstrip(".").endswith(data.class_names[label])
    assert data.class_texts is not None and len(data.class_texts) == 3 * len(config.templates)
    assert data.prompt_variant is not None and data.prompt_variant.max() == 2  # one a class
    # recall_at_1_* counts the same caption; class_recall_at_1_* any image of the class
    _, by_text = np.unique(np.asarray(data.eval.b_texts), return_inverse=True)
    assert np.array_equal(data.eval.match_ids.numpy(), by_text)
    again = make_image_folder(config, seed=0)
    assert torch_equal(again.eval.a[:], data.eval.a[:])


def torch_equal(x: object, y: object) -> bool:
    import torch

    return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"root": "nope"}, "no such folder"),
        ({"templates": ["a photo"]}, "must each hold one {}"),
    ],
)
def test_bad_folders_and_templates_are_validation_errors(
    tmp_path: Path, change: dict[str, object], fragment: str
) -> None:
    root = save_labelled_folder(tmp_path / "folder", per_class=4)
    with pytest.raises(ValueError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        ImageFolderDataConfig.model_validate({"root": str(root)} | change)


def test_too_few_images_is_a_data_error(tmp_path: Path) -> None:
    root = save_labelled_folder(tmp_path / "folder", per_class=4)
    with pytest.raises(DataError, match="12 images cannot give"):
        make_image_folder(ImageFolderDataConfig(root=str(root), n_eval=64), seed=0)


@pytest.mark.slow
def test_a_pretrained_clip_measured_on_a_labelled_folder(tmp_path: Path) -> None:
    clip = save_tiny_clip(tmp_path / "clip")
    root = save_labelled_folder(tmp_path / "folder", per_class=12)
    spec = tmp_path / "zero_shot.yaml"
    spec.write_text(
        "name: zero_shot\n"
        f"base:\n  data: {{name: image_folder, root: {root}, n_eval: 16, image_size: 32}}\n"
        f"  model:\n    image: {{kind: clip_pretrained, path: {clip}}}\n"
        "    text: {kind: clip_pretrained}\n"
        "  optim: {epochs: 0, batch_size: 16}\n"
        "metric: {name: zero_shot_acc, mode: max}\n"
    )
    result = orchestrator("submit", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        (trial,) = store.trials("zero_shot")
    assert trial.status == "completed" and 0.0 <= trial.metrics["zero_shot_acc"] <= 1.0
