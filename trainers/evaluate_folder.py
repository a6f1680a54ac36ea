"""Zero-shot and the gap on a labelled image folder, measured at every evaluation of a trial
that trains on other data (`eval.folder`): a CLIP fine-tuned on captions reports how it
classifies the user's own classes as it trains, as the paper measures its temperature sweep.

The folder's held-out images (those the `image_folder` data set of the folder holds out) are
streamed from disk as the data set streams them and embedded by tower a, which does its own
preprocessing; the class prompts (every class in every template) are encoded by the tokenizer
the training captions went through and embedded by tower b. A class embedding is the
normalised mean of its prompts' (CLIP's prompt ensemble); an image takes the class of the
nearest one. The gap pairs each image with its class embedding, the text a zero-shot
classifier matches it with: `folder_gap_norm` = ‖mean(images) - mean(their classes)‖.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainers.config import TrialConfig
from trainers.data.image_folder import HeldOutFolder, held_out_folder
from trainers.data.paired import PairedData
from trainers.device import full_precision, to_device
from trainers.embedding_cache import cached
from trainers.errors import DataError
from trainers.evaluate import class_embeddings
from trainers.gap import gap_metrics
from trainers.inputs import TowerInputs, embed_b, embed_files
from trainers.towers.pretrained import pretrained_tokens, tokenizer_folder

PREFIX = "folder_"
GAP_METRICS = ("gap_norm", "centroid_cosine", "paired_cosine")  # reported as folder_<name>


@dataclass(frozen=True)
class FolderInputs:
    """What the towers read of the folder: its held-out images, still files, and the class
    prompts as tower b's inputs on the device."""

    folder: HeldOutFolder
    prompts: torch.Tensor  # tower b's inputs, one row per prompt

    @classmethod
    def of(cls, config: TrialConfig, data: PairedData, device: torch.device) -> FolderInputs | None:
        """The trial's `eval.folder`, or None without one."""
        if config.eval.folder is None:
            return None
        folder = held_out_folder(config.eval.folder, config.seed)
        return cls(folder, to_device(prompt_inputs(config, data, folder.prompts), device))

    def cache_key(self, towers_key: str) -> str:
        """Names these embeddings of towers whose eval embeddings `towers_key` names."""
        digest = hashlib.sha256(f"folder\0{towers_key}\0".encode())
        digest.update(self.folder.images.content_key().encode())
        digest.update(self.prompts.cpu().numpy().tobytes())
        return digest.hexdigest()[:32]


def folder_prompt_arrays(inputs: FolderInputs) -> dict[str, np.ndarray]:
    """The prompts behind the folder's class embeddings, saved with the final embeddings so
    that the trial's artifacts say what its folder_zero_shot_acc matched images against."""
    held = inputs.folder
    return {
        "folder_class_names": np.array(held.class_names, dtype=str),
        "folder_class_prompts": np.array(held.prompts, dtype=str),
        "folder_prompt_class": held.prompt_class.numpy(),
    }


def prompt_inputs(config: TrialConfig, data: PairedData, prompts: tuple[str, ...]) -> torch.Tensor:
    """The prompts as the training captions reach tower b: a pretrained text tower's own
    tokenizer, else the data set's word ids (a word it never saw is unknown)."""
    folder = tokenizer_folder(config.model.text)
    if folder is not None:
        return pretrained_tokens(folder, prompts)
    if data.tokenizer is None:
        raise DataError(f"eval.folder: the text tower of {config.data.name} reads no words")
    return data.tokenizer.encode_batch(list(prompts))


def folder_metrics(
    image: nn.Module,
    text: nn.Module,
    inputs: FolderInputs,
    device_inputs: TowerInputs,
    batch_size: int,
    towers_key: str | None,
) -> dict[str, float]:
    """The folder_* metrics of the towers as they are now, embedded in float32 without
    gradients, in batches; towers that do not change (`towers_key`) embed the folder once."""
    key = None if towers_key is None else inputs.cache_key(towers_key)

    def embeddings() -> tuple[torch.Tensor, torch.Tensor, None]:
        images = embed_files(image, inputs.folder.images, device_inputs, batch_size)
        return images, embed_b(text, inputs.prompts, batch_size), None

    with full_precision(device_inputs.device), torch.inference_mode():
        images, prompts, _ = cached(key, embeddings)
    return folder_scores(images, inputs.folder.labels, prompts, inputs.folder.prompt_class)


def folder_scores(
    images: torch.Tensor, labels: torch.Tensor, prompts: torch.Tensor, prompt_class: torch.Tensor
) -> dict[str, float]:
    """Zero-shot accuracy with the prompt ensemble, and the gap between each image and its
    class embedding, from unit embeddings (CPU float32)."""
    classes = class_embeddings(prompts, prompt_class)  # row k: class k
    hits = classes.predict(images) == labels
    gap = gap_metrics(images, classes.vectors[labels])
    return {f"{PREFIX}zero_shot_acc": float(hits.float().mean())} | {
        f"{PREFIX}{name}": gap[name] for name in GAP_METRICS
    }
