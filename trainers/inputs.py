"""The inputs of both towers as a trial feeds them: tensors moved to the device once and then
only indexed, or a folder's images streamed from disk batch by batch (data/image_files.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from trainers.batches import batches
from trainers.config import TrialConfig
from trainers.data.image_files import ImageFiles, in_order
from trainers.data.paired import InputSpec, PairedData
from trainers.device import to_device
from trainers.evaluate import embed, embed_tokens


def image_layout(tower: nn.Module, spec: InputSpec) -> torch.memory_format:
    """Channels-last for convolutions on images: oneDNN's convolutions are faster in that
    layout on the CPU (benchmarks/README.md), and it is the layout bf16 convolutions on the GPU
    want too."""
    convolves = any(isinstance(m, nn.Conv2d) for m in tower.modules())
    if spec.kind == "image" and len(spec.shape) == 3 and convolves:
        return torch.channels_last
    return torch.contiguous_format


@dataclass(frozen=True)
class TowerInputs:
    """Both splits' inputs: tensors already on the device in the layout the towers want, so
    the loop only indexes them; streamed images stay files until a batch is read."""

    device: torch.device
    layout: torch.memory_format
    train_a: torch.Tensor | ImageFiles
    train_b: torch.Tensor
    eval_a: torch.Tensor | ImageFiles
    eval_b: torch.Tensor
    class_b: torch.Tensor | None

    @classmethod
    def on_device(cls, data: PairedData, tower_a: nn.Module, device: torch.device) -> TowerInputs:
        layout = image_layout(tower_a, data.a_input)

        def placed(x: torch.Tensor | ImageFiles) -> torch.Tensor | ImageFiles:
            if isinstance(x, ImageFiles):
                return x
            return to_device(x, device).contiguous(memory_format=layout)

        classes = data.class_inputs
        return cls(
            device=device,
            layout=layout,
            train_a=placed(data.train.a),
            train_b=to_device(data.train.b, device),
            eval_a=placed(data.eval.a),
            eval_b=to_device(data.eval.b, device),
            class_b=None if classes is None else to_device(classes, device),
        )

    def arrived(self, images: torch.Tensor) -> torch.Tensor:
        """A batch read from disk, on the device in the towers' layout."""
        return images.to(self.device, non_blocking=True).contiguous(memory_format=self.layout)


def train_batches(
    config: TrialConfig, data: PairedData, inputs: TowerInputs, first: int, steps: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(step, tower-a batch, tower-b batch) for steps first..steps, in the order of batches.py
    whether the images are in memory or streamed."""
    n, items = len(data.train), data.train.items
    if not isinstance(inputs.train_a, ImageFiles):
        for step, rows in batches(config, n, first, steps, inputs.device, items):
            yield step, inputs.train_a[rows], inputs.train_b[rows]
        return
    # The loader's workers read ahead along the same order that the loop below walks.
    order = (
        rows.tolist() for _, rows in batches(config, n, first, steps, torch.device("cpu"), items)
    )
    loader = inputs.train_a.loader(order, pin=inputs.device.type == "cuda")
    walked = batches(config, n, first, steps, inputs.device, items)
    for (step, rows), images in zip(walked, loader, strict=True):
        yield step, inputs.arrived(images), inputs.train_b[rows]


def embed_a(tower: nn.Module, inputs: TowerInputs, batch_size: int) -> torch.Tensor:
    """Tower a's embeddings of the eval split, as evaluate.embed gives them."""
    images = inputs.eval_a
    if not isinstance(images, ImageFiles):
        return embed(tower, images, batch_size)
    return embed_files(tower, images, inputs, batch_size)


def embed_files(
    tower: nn.Module, images: ImageFiles, inputs: TowerInputs, batch_size: int
) -> torch.Tensor:
    """Tower a's embeddings of images streamed from disk in batches, as CPU float32."""
    loader = images.loader(in_order(len(images), batch_size), pin=inputs.device.type == "cuda")
    with torch.inference_mode():
        parts = [tower(inputs.arrived(batch)).float() for batch in loader]
    return torch.cat(parts).cpu()


def embed_b(tower: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    if inputs.dtype in (torch.int64, torch.int32):
        return embed_tokens(tower, inputs, batch_size)
    return embed(tower, inputs, batch_size)
