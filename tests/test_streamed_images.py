"""Folder images streamed from disk: rows read as batches need them equal the images, the
uint8 cache reads back the same pixels and is remade when an image changes, a trial trains
the same with or without loader workers, and its peak memory stays flat as the folder grows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers.config import ImageFolderDataConfig, ImageTextDataConfig, TrialConfig
from trainers.data.image_files import CACHE_SUFFIX, ImageFiles, load_image
from trainers.data.image_folder import make_image_folder
from trainers.data.image_text import make_image_text
from trainers.dual_encoder import train_dual_encoder
from trainers.errors import DataError

CLASSES = ("circle", "square", "triangle", "star")


def write_classes(root: Path, per_class: int, size: int = 24) -> Path:
    """Noisy images whose mean colour tells the class, so a tower can learn it."""
    rng = np.random.default_rng(per_class)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        colour = np.array([60 * k + 40, 200 - 40 * k, 120], dtype=np.float64)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 30, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:05d}.png")
    return root


def test_rows_are_the_images_and_only_paths_are_held(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "folder", per_class=6)
    data = make_image_folder(ImageFolderDataConfig(root=str(root), n_eval=8, image_size=16), 0)
    images = data.train.a
    assert isinstance(images, ImageFiles) and images.shape == (16, 3, 16, 16)
    expected = torch.stack([load_image(images.files[int(f)], 16) for f in images.file_of])
    assert torch.equal(images[:], expected)
    assert torch.equal(images[torch.tensor([3, 0])], expected[[3, 0]])
    batches = list(images.loader([[0, 1, 2], [5, 4]], pin=False))
    assert [b.shape[0] for b in batches] == [3, 2] and torch.equal(batches[1], expected[[5, 4]])


def test_the_uint8_cache_reads_the_same_pixels_and_follows_changed_images(
    tmp_path: Path,
) -> None:
    root = write_classes(tmp_path / "folder", per_class=4)
    paths = sorted(root.rglob("*.png"))
    files = ImageFiles.of([*paths, paths[0]], size=16, workers=1)  # a file on two rows
    cached = files.cached_in(tmp_path / "cache")
    assert cached.cache is not None and cached.cache.stat().st_size == len(paths) * 3 * 16 * 16
    assert torch.equal(cached[:], files[:])
    made = cached.cache.stat().st_mtime_ns
    assert files.cached_in(tmp_path / "cache").cache == cached.cache  # a second trial reuses it
    assert cached.cache.stat().st_mtime_ns == made
    Image.new("RGB", (24, 24), (255, 255, 255)).save(paths[0])  # the user replaces an image
    remade = files.cached_in(tmp_path / "cache")
    assert remade.cache != cached.cache and torch.equal(remade[0], torch.ones(3, 16, 16))
    assert len(list((tmp_path / "cache").glob(f"*{CACHE_SUFFIX}"))) == 2
    assert not list((tmp_path / "cache").glob("*.partial"))


def _trial(root: Path, **data: object) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "data": {"name": "image_folder", "root": str(root), "n_eval": 16, "image_size": 16}
            | data,
            "model": {
                "image": {"channels": [8]},
                "text": {"hidden_size": 16, "num_layers": 1},
                "embed_dim": 16,
            },
            "optim": {"batch_size": 16, "epochs": 2},
            "eval": {"every_steps": 4},
        }
    )


def test_a_trial_trains_the_same_streamed_by_workers_in_process_or_from_the_cache(
    tmp_path: Path,
) -> None:
    root = write_classes(tmp_path / "folder", per_class=12)
    results = [
        train_dual_encoder(_trial(root, **data), lambda step, metrics: None).metrics
        for data in ({"loader_workers": 2}, {"loader_workers": 0}, {"cache": str(tmp_path / "c")})
    ]
    for other in results[1:]:
        assert other["loss"] == pytest.approx(results[0]["loss"], rel=1e-5)
        assert other["gap_norm"] == pytest.approx(results[0]["gap_norm"], rel=1e-5)
    assert results[0]["train_loss"] > 0


def test_an_unreadable_image_read_by_a_worker_is_one_line_naming_it(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "folder", per_class=12)
    broken = root / "star" / "00003.png"
    broken.write_text("not a png")
    with pytest.raises(DataError) as caught:
        train_dual_encoder(_trial(root, loader_workers=2), lambda step, metrics: None)
    message = str(caught.value)
    assert message.startswith(f"{broken}: not a readable image") and "\n" not in message


def test_a_missing_image_is_named_before_anything_trains(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "folder", per_class=8)
    (tmp_path / "c.csv").write_text(
        "path,caption\n"
        + "".join(f"circle/{i:05d}.png,a circle\n" for i in range(8))
        + "".join(f"square/{i:05d}.png,a square\n" for i in range(8))
        + "gone.png,nothing\n"
    )
    config = ImageTextDataConfig(captions=str(tmp_path / "c.csv"), root=str(root), n_eval=8)
    with pytest.raises(DataError, match=r"gone.png: image not found$"):
        make_image_text(config, 0)


PEAK_MEMORY = """
import json, resource, sys
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.errors import DataError
config = TrialConfig.model_validate(json.loads(sys.argv[1]))
train_dual_encoder(config, lambda step, metrics: None)
peak = lambda who: resource.getrusage(who).ru_maxrss  # KiB on Linux
print(json.dumps([peak(resource.RUSAGE_SELF), peak(resource.RUSAGE_CHILDREN)]))
"""


@pytest.mark.slow
def test_peak_memory_of_a_trial_stays_flat_as_the_folder_grows_16_fold(tmp_path: Path) -> None:
    """At 64 px, 16 x 256 images as float32 would be 200 MB: held in memory, the trial's peak
    would grow by half. Streamed, one epoch reads every image and the peak stays put."""
    peaks = []
    for scale in (1, 4, 16):
        root = write_classes(tmp_path / f"x{scale}", per_class=64 * scale, size=64)
        config = _trial(root, image_size=64, loader_workers=2).model_dump(mode="json")
        config["optim"] |= {"batch_size": 32, "epochs": 1}
        config["eval"] = {"every_steps": 1000}
        run = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, json.dumps(config)],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"OMP_NUM_THREADS": "1"},
        )
        peaks.append(json.loads(run.stdout.splitlines()[-1]))
    (self_1, workers_1), _, (self_16, workers_16) = peaks
    assert self_16 < 1.10 * self_1, peaks
    assert workers_16 < 1.10 * workers_1, peaks
