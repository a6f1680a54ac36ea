"""The `image_folder` data set: the user's labelled images in the layout of torchvision's
ImageFolder (one subfolder per class, its name the class name), the layout CIFAR-10, EuroSAT
and most classification sets come in.

Each image is paired with a caption naming its class in one of the prompt templates (drawn
with the seed), and any image of the same class is a hit in retrieval. Zero-shot
classification prompts each class with every template, averaged as CLIP's prompt ensembles
are ("a photo of a {}." ...), so a pretrained CLIP measured here gives its zero-shot accuracy
on the user's own classes. `held_out_folder` gives the same held-out images and prompts to a
trial that trains on other data and measures the folder beside it (`eval.folder`,
trainers/evaluate_folder.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainers.config import ImageFolderDataConfig
from trainers.data.image_files import ImageFiles, check_readable, image_source
from trainers.data.paired import (
    InputSpec,
    PairedData,
    PromptEnsemble,
    held_out_order,
    text_split,
    token_spec,
)
from trainers.data.tokenizer import WordTokenizer
from trainers.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of `root`, sorted by name (class k is the k-th)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_name(folder: Path) -> str:
    return folder.name.replace("_", " ")


def make_image_folder(config: ImageFolderDataConfig, seed: int) -> PairedData:
    root = Path(config.root).expanduser()
    files, names = labelled_files(config)
    n = len(files)
    n_train = n - config.n_eval if config.n_train is None else config.n_train
    if n_train < 2 or n_train + config.n_eval > n:
        raise DataError(
            f"{root}: {n} images cannot give n_train {n_train} and n_eval {config.n_eval}"
        )
    check_readable(f for f, _ in files)
    prompts = [[list(phrasings)] for phrasings in class_prompts(config, names)]
    tokenizer = WordTokenizer.from_texts([p for per_class in prompts for p in per_class[0]])
    ensemble = PromptEnsemble.of(tokenizer, prompts)
    order = held_out_order(n, seed)
    rng = np.random.default_rng([seed, 5])
    splits = []
    for idx in (order[:n_train], order[n - config.n_eval :]):
        labels = np.array([files[i][1] for i in idx], dtype=np.int64)
        template = rng.integers(len(config.templates), size=len(idx))
        said = zip(template, labels, strict=True)
        captions = [config.templates[t].format(names[k]) for t, k in said]
        images = image_source([files[i][0] for i in idx.tolist()], config)
        # recall_at_1_* counts the same caption, class_recall_at_1_* any image of the class.
        splits.append(text_split(images, captions, tokenizer, labels))
    return PairedData(
        train=splits[0],
        eval=splits[1],
        a_input=InputSpec("image", (3, config.image_size, config.image_size)),
        b_input=token_spec(tokenizer),
        class_names=tuple(names),
        tokenizer=tokenizer,
    ).with_prompts(ensemble)


@dataclass(frozen=True)
class HeldOutFolder:
    """A labelled folder as an evaluation set of a trial that trains on other data
    (`eval.folder`): its held-out images, streamed, their classes, and every class's prompts."""

    images: ImageFiles
    labels: torch.Tensor  # (images,) int64, class k the k-th subfolder
    class_names: tuple[str, ...]
    prompts: tuple[str, ...]  # each class in every template, class by class
    prompt_class: torch.Tensor  # (prompts,) int64

    def __len__(self) -> int:
        return len(self.images)


def held_out_folder(config: ImageFolderDataConfig, seed: int) -> HeldOutFolder:
    """The folder's `n_eval` held-out images: those the `image_folder` data set of the same
    folder and seed holds out, so both measure the same images."""
    files, names = labelled_files(config)
    n = len(files)
    if config.n_eval > n:
        root = Path(config.root).expanduser()
        raise DataError(f"{root}: {n} images cannot give n_eval {config.n_eval}")
    idx = held_out_order(n, seed)[n - config.n_eval :].tolist()
    check_readable(files[i][0] for i in idx)
    prompts = class_prompts(config, names)
    return HeldOutFolder(
        images=image_source([files[i][0] for i in idx], config),
        labels=torch.tensor([files[i][1] for i in idx], dtype=torch.int64),
        class_names=tuple(names),
        prompts=tuple(p for phrasings in prompts for p in phrasings),
        prompt_class=torch.tensor([k for k, ps in enumerate(prompts) for _ in ps]),
    )


def labelled_files(config: ImageFolderDataConfig) -> tuple[list[tuple[Path, int]], list[str]]:
    """Every image of the folder with its class, and the class names, in class order."""
    folders = class_folders(Path(config.root).expanduser())
    files = [(f, k) for k, folder in enumerate(folders) for f in _images(folder)]
    return files, [class_name(f) for f in folders]


def class_prompts(config: ImageFolderDataConfig, names: list[str]) -> list[list[str]]:
    """Each class named in every template: the phrasings its ensemble averages."""
    return [[t.format(name) for t in config.templates] for name in names]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
