"""Every data set: shapes of the tensors, determinism from the seed, and clear errors for bad
configuration and bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from trainers.config import TrialConfig
from trainers.data.registry import make_data
from trainers.errors import DataError


def data(spec: dict[str, Any], seed: int = 0) -> Any:
    return make_data(TrialConfig.model_validate({"data": spec}).data, seed)


def test_shapes_backgrounds_are_a_group_attribute() -> None:
    plain = data({"n_train": 16, "n_eval": 64})
    grouped = data({"n_train": 16, "n_eval": 64, "backgrounds": 2})
    assert plain.eval.groups is None and grouped.group_names == ("black", "grey")
    assert set(grouped.eval.groups.tolist()) == {0, 1}
    assert torch.equal(plain.eval.labels, grouped.eval.labels)  # same shapes, other backgrounds


def test_digits_images_captions_and_prompts() -> None:
    digits = data({"name": "digits", "n_train": 100, "n_eval": 50})
    assert digits.train.a.shape == (100, 1, 8, 8) and digits.eval.a.shape == (50, 1, 8, 8)
    assert float(digits.train.a.max()) <= 1.0
    assert digits.class_inputs.shape[0] == 40  # four caption templates per digit
    words = [digits.tokenizer.vocab[t] for t in digits.train.b[0].tolist() if t > 2]
    assert words[-1] == digits.class_names[int(digits.train.labels[0])]
    assert torch.equal(digits.eval.a, data({"name": "digits", "n_train": 100, "n_eval": 50}).eval.a)
    assert not torch.equal(
        digits.train.a, data({"name": "digits", "n_train": 100}, 1).train.a[:100]
    )


def test_digits_refuse_more_pairs_than_there_are() -> None:
    with pytest.raises(ValidationError, match="exceeds the 1797"):
        TrialConfig.model_validate({"data": {"name": "digits", "n_train": 1700, "n_eval": 200}})


def test_gaussian_pairs_and_classes() -> None:
    same = data({"name": "gaussian", "dim": 16, "n_train": 8, "n_eval": 32})
    assert torch.equal(same.eval.a, same.eval.b) and same.eval.labels is None
    noisy = data({"name": "gaussian", "dim": 16, "n_train": 8, "n_eval": 32, "correlation": 0.5,
                  "classes": 3})  # fmt: skip
    assert not torch.equal(noisy.eval.a, noisy.eval.b)
    assert noisy.class_inputs.shape == (3, 16) and int(noisy.eval.labels.max()) <= 2


def test_unknown_data_set_is_one_clear_error() -> None:
    with pytest.raises(ValidationError, match="unknown data set; known: shapes, digits"):
        TrialConfig.model_validate({"data": {"name": "cifar"}})


def test_paired_features_from_the_papers_embeddings() -> None:
    from tests.test_gap_metrics import features_dir

    path = features_dir() / "features_clip.npy"
    if not path.exists():
        pytest.skip(f"real embeddings not found at {path} (set GAPSWEEP_FEATURES_DIR)")
    features = data({"name": "paired_features", "path": str(path), "n_eval": 100})
    assert features.train.a.shape == (400, 512) and features.eval.b.shape == (100, 512)


def test_paired_features_npz_with_labels(tmp_path: Path) -> None:
    path = tmp_path / "pairs.npz"
    rng = np.random.default_rng(0)
    np.savez(path, a=rng.normal(size=(40, 4)), b=rng.normal(size=(40, 6)), labels=np.arange(40) % 3)
    features = data({"name": "paired_features", "path": str(path), "n_eval": 10})
    assert features.a_input.shape == (4,) and features.b_input.shape == (6,)
    assert features.eval.labels is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (np.zeros((3, 5, 4)), r"shape \(2, N, d\)"),
        (np.full((2, 20, 4), np.nan), "non-finite values"),
        (np.zeros((2, 0, 4)), "non-empty"),
        ({"a": np.zeros((20, 4))}, "lacks array"),
        ({"a": np.zeros((20, 4)), "b": np.zeros((20, 4)), "labels": np.zeros(3)}, "labels"),
    ],
)
def test_paired_features_bad_files(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / ("f.npz" if isinstance(content, dict) else "f.npy")
    if isinstance(content, dict):
        np.savez(path, **content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(DataError, match=message):
        data({"name": "paired_features", "path": str(path), "n_eval": 8})


def test_paired_features_too_few_pairs(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.ones((2, 9, 4)))
    with pytest.raises(DataError, match="cannot give"):
        data({"name": "paired_features", "path": str(tmp_path / "f.npy"), "n_eval": 8})


def write_images(folder: Path, n: int) -> list[str]:
    names = []
    for i in range(n):
        name = f"img{i}.png"
        Image.new("RGB", (10, 12), (i * 20 % 255, 0, 0)).save(folder / name)
        names.append(name)
    return names


@pytest.mark.parametrize("form", ["csv", "jsonl", "coco"])
def test_image_text_formats(tmp_path: Path, form: str) -> None:
    names = write_images(tmp_path, 20)
    captions = [f"a red square number {i % 4}" for i in range(20)]
    if form == "csv":
        file = tmp_path / "c.csv"
        rows = ["path,caption"] + [f"{n},{c}" for n, c in zip(names, captions, strict=True)]
        file.write_text("\n".join(rows))
    elif form == "jsonl":
        file = tmp_path / "c.jsonl"
        file.write_text("\n".join(json.dumps({"path": n, "caption": c})
                                  for n, c in zip(names, captions, strict=True)))  # fmt: skip
    else:
        file = tmp_path / "c.json"
        images = [{"id": i, "file_name": n} for i, n in enumerate(names)]
        notes = [{"image_id": i, "caption": c} for i, c in enumerate(captions)]
        file.write_text(json.dumps({"images": images, "annotations": notes}))
    pairs = data({"name": "image_text", "captions": str(file), "image_size": 8, "n_eval": 8})
    assert pairs.train.a.shape == (12, 3, 8, 8) and pairs.eval.b.shape[0] == 8


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("c.txt", "x", "must be a .csv"),
        ("c.csv", "file,text\na.png,hi", "columns path and caption"),
        ("c.jsonl", "{bad json", "line 1: invalid JSON"),
        ("c.json", json.dumps({"images": []}), "not a COCO captions file"),
        ("c.csv", "path,caption\n", "no \\(image, caption\\) pairs"),
        ("c.csv", "path,caption\n" + "\n".join(f"gone{i}.png,x" for i in range(20)), "not found"),
    ],
)
def test_image_text_bad_files(tmp_path: Path, file: str, text: str, message: str) -> None:
    (tmp_path / file).write_text(text)
    with pytest.raises(DataError, match=message):
        data({"name": "image_text", "captions": str(tmp_path / file), "n_eval": 8})


def test_image_text_unreadable_image(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"b{i}.png").write_text("not a png")
    (tmp_path / "c.csv").write_text("path,caption\n" + "\n".join(f"b{i}.png,x" for i in range(20)))
    made = data({"name": "image_text", "captions": str(tmp_path / "c.csv"), "n_eval": 8})
    with pytest.raises(DataError, match="not a readable image"):  # read as batches need it
        made.train.a[:2]


@pytest.mark.parametrize("value", [None, 3, [1, 2]])
def test_a_data_set_that_is_not_a_mapping_is_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError, match="unknown data set"):
        TrialConfig.model_validate({"data": value})
