"""The eval embeddings of towers that do not change, computed once and shared by the trials of
a sweep: a pretrained CLIP measured at init, probed, or its gap shifted at twenty λ embeds its
data once, not once a trial.

A file is named by what the embeddings are a function of: both towers' architecture and
weights, every eval input (a folder's images by path, size and change time), the kind of
device, and the code that computes them (the trainers' source, the torch and transformers
versions). Trials that share all of that share the file, whatever else they vary (the
temperature, the shift λ, the metric). The folder is
$GAPSWEEP_CACHE_DIR/embeddings, else ~/.cache/gapsweep/embeddings, on each node.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from trainers.data.image_files import ImageFiles
from trainers.inputs import TowerInputs, embed_a, embed_b

EvalEmbeddings = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""Tower a's and tower b's embeddings of the eval split, and tower b's of the class prompts."""


def cache_folder() -> Path:
    root = os.environ.get("GAPSWEEP_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gapsweep"
    return base / "embeddings"


def towers_frozen(image: nn.Module, text: nn.Module) -> bool:
    return not any(p.requires_grad for tower in (image, text) for p in tower.parameters())


@functools.cache
def code_version() -> str:
    """The trainers' own source and the versions of the libraries that run the towers: a fix to
    a tower's forward pass must not be answered with embeddings its old code made."""
    digest = hashlib.sha256(f"torch {torch.__version__}".encode())
    transformers = sys.modules.get("transformers")
    digest.update(f" transformers {getattr(transformers, '__version__', '-')}".encode())
    package = Path(__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(f"\0{source.relative_to(package)}\0".encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def frozen_key(image: nn.Module, text: nn.Module, inputs: TowerInputs, described: str) -> str:
    """Names the eval embeddings of these towers, as they are now, on these inputs.

    `described` is the towers' configs: settings without weights (a text tower's pooling) change
    the embeddings too, and neither the weights nor the classes show them."""
    digest = hashlib.sha256(f"{code_version()} {inputs.device.type}\0{described}".encode())
    for tower in (image, text):
        digest.update(f"\0{type(tower).__module__}.{type(tower).__qualname__}".encode())
        for name, tensor in tower.state_dict().items():
            digest.update(f"\0{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(_bytes(tensor))
    for part in (inputs.eval_a, inputs.eval_b, inputs.class_b):
        if isinstance(part, ImageFiles):
            digest.update(part.content_key().encode())
        elif part is not None:
            digest.update(f"\0{tuple(part.shape)}{part.dtype}".encode())
            digest.update(_bytes(part))
    return digest.hexdigest()[:32]


def eval_embeddings(
    image: nn.Module, text: nn.Module, inputs: TowerInputs, batch_size: int, key: str | None
) -> EvalEmbeddings:
    """The eval embeddings: read from the cache under `key` where a trial left them, else
    computed (and, with a key, left there for the next)."""
    return cached(
        key,
        lambda: (
            embed_a(image, inputs, batch_size),
            embed_b(text, inputs.eval_b, batch_size),
            None if inputs.class_b is None else embed_b(text, inputs.class_b, batch_size),
        ),
    )


def cached(key: str | None, compute: Callable[[], EvalEmbeddings]) -> EvalEmbeddings:
    """What `compute` gives, read from the cache under `key` where a trial left it (None: no
    cache), else computed and left there."""
    path = cache_folder() / f"{key}.pt" if key is not None else None
    if path is not None and path.is_file():
        stored = _read(path)
        if stored is not None:
            return stored
    found = compute()
    if path is not None:
        _write(path, found)
    return found


def _bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def _read(path: Path) -> EvalEmbeddings | None:
    """The stored embeddings, or None for a file that cannot be read (it is then made again)."""
    try:
        stored = torch.load(path, weights_only=True)
        return stored["a"], stored["b"], stored.get("prompts")
    except Exception:  # a torn or foreign file raises whatever the unpickler meets
        return None


def _write(path: Path, found: EvalEmbeddings) -> None:
    """Written beside and renamed into place, so that a trial reading at the same time sees the
    whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    a, b, prompts = found
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        torch.save(
            {"a": a, "b": b, **({"prompts": prompts} if prompts is not None else {})}, partial
        )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
