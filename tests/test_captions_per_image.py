"""Several captions per image (COCO has five): the split is by image, training passes over
images with one caption each per epoch, and retrieval counts any caption of an image as a hit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainers.batches import batches, epoch_rows, units
from trainers.config import ImageTextDataConfig, TrialConfig
from trainers.data.image_text import make_image_text
from trainers.data.paired import PairedSplit
from trainers.evaluate import Embeddings, evaluate

CAPTIONS = ("a red square", "a square that is red", "red, and square")


def write_coco_like(folder: Path, images: int, per_image: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(images):
        pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        rows += [(f"{i}.png", f"{CAPTIONS[j % 3]} number {i}") for j in range(per_image)]
    captions = folder / "captions.csv"
    with captions.open("w", newline="") as out:
        csv.writer(out).writerows([("path", "caption"), *rows])
    return captions


def test_the_split_is_by_image_and_every_caption_is_a_row(tmp_path: Path) -> None:
    captions = write_coco_like(tmp_path / "coco", images=30, per_image=3)
    data = make_image_text(ImageTextDataConfig(captions=str(captions), n_eval=10), seed=0)
    assert data.train.items is not None and data.eval.items is not None
    assert len(data.train) == 20 * 3 and len(data.eval) == 10 * 3
    numbers = {split: {t.rsplit(" ", 1)[1] for t in s.b_texts or ()}
               for split, s in (("train", data.train), ("eval", data.eval))}  # fmt: skip
    assert not numbers["train"] & numbers["eval"]  # no image on both sides
    for split in (data.train, data.eval):
        assert split.items is not None
        for item in split.items.unique():
            rows = (split.items == item).nonzero().flatten()
            assert len(rows) == 3 and torch.equal(split.a[rows[0]], split.a[rows[2]])
        assert torch.equal(split.match_ids, split.items)


def test_one_caption_per_image_keeps_the_pairs_as_they_were(tmp_path: Path) -> None:
    captions = write_coco_like(tmp_path / "flickr", images=30, per_image=1)
    data = make_image_text(ImageTextDataConfig(captions=str(captions), n_eval=10), seed=0)
    assert data.train.items is None and len(data.train) == 20


def test_an_epoch_passes_over_images_one_caption_each() -> None:
    items = torch.arange(12).repeat_interleave(3)  # 12 images, 3 caption rows each
    seen = [items[epoch_rows(len(items), items, seed=0, epoch=e)] for e in range(4)]
    for epoch in seen:
        assert sorted(epoch.tolist()) == list(range(12))  # every image once
    rows = [epoch_rows(len(items), items, seed=0, epoch=e) for e in range(4)]
    assert len({tuple(r.tolist()) for r in rows}) == 4  # the captions drawn differ by epoch
    assert torch.equal(rows[1], epoch_rows(len(items), items, seed=0, epoch=1))  # (seed, epoch)
    config = TrialConfig.model_validate({"optim": {"batch_size": 4, "epochs": 2}})
    drawn = list(batches(config, len(items), 1, 6, torch.device("cpu"), items))
    assert units(len(items), items) == 12 and [s for s, _ in drawn] == [1, 2, 3, 4, 5, 6]
    for _, batch in drawn:
        assert len(set(items[batch].tolist())) == 4  # no image meets itself as a negative


def test_retrieval_counts_any_caption_of_the_image() -> None:
    e = torch.eye(4)
    # Two images with two caption rows each; each image row is nearest to the other caption
    # row of its image: a miss when rows must match, a hit when any caption of the image does.
    text = torch.nn.functional.normalize(torch.stack(
        [e[0] + 0.3 * e[2], e[0] + 0.3 * e[3], e[1] + 0.3 * e[2], e[1] + 0.3 * e[3]]
    ), dim=1)  # fmt: skip
    image = torch.nn.functional.normalize(torch.stack(
        [e[0] + 0.5 * e[3], e[0] + 0.5 * e[2], e[1] + 0.5 * e[3], e[1] + 0.5 * e[2]]
    ), dim=1)  # fmt: skip
    items = torch.tensor([0, 0, 1, 1])

    def recall(split: PairedSplit) -> float:
        return evaluate(Embeddings(image, text), split, None, torch.tensor(10.0), 4)[
            "recall_at_1_a2b"
        ]

    assert recall(PairedSplit(image, text, match_ids=items, items=items)) == 1.0
    assert recall(PairedSplit(image, text, match_ids=torch.arange(4))) == 0.0
