"""What a spec needs to know of a pretrained CLIP folder before anything runs, read without
torch: that the folder holds a transformers CLIP model with its image processor and tokenizer,
its embedding size, and its learned temperature (CLIP's `logit_scale`, read from the
safetensors weights with NumPy)."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER = ("tokenizer.json", "vocab.json", "tokenizer.model")
KIND = "clip_pretrained"  # the tower kind (towers.py) read from such a folder


@dataclass(frozen=True)
class ClipFolder:
    path: Path
    projection_dim: int
    temperature: float | None  # 1 / exp(logit_scale); None when the weights are not safetensors


def clip_folder_problem(path: str) -> str | None:
    """Why `path` is not a usable transformers CLIP folder, or None."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return f"{folder}: no such folder"
    config = folder / "config.json"
    if not config.is_file():
        return f"{folder}: no config.json, not a transformers model folder"
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return f"{config}: not a readable JSON config"
    if model_type != "clip":
        return f"{folder}: a {model_type!r} model, not a CLIP model (model_type 'clip')"
    missing = [
        what
        for what, names in (
            ("weights (model.safetensors)", WEIGHTS),
            ("image processor (preprocessor_config.json)", ("preprocessor_config.json",)),
            ("tokenizer (tokenizer.json or vocab.json)", TOKENIZER),
        )
        if not any((folder / name).is_file() for name in names)
    ]
    return f"{folder}: no {', no '.join(missing)}" if missing else None


def read_clip_folder(path: str) -> ClipFolder:
    """The folder's embedding size and learned temperature; call after clip_folder_problem.

    Read once per folder and version of its files: validating a sweep asks for every trial.
    """
    folder = Path(path).expanduser().resolve()
    stamps = tuple(
        (f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None
        for f in (folder / "config.json", folder / "model.safetensors")
    )
    return _read(folder, stamps)


@functools.lru_cache(maxsize=16)
def _read(folder: Path, stamps: tuple[tuple[int, int] | None, ...]) -> ClipFolder:
    config = json.loads((folder / "config.json").read_text())
    weights = folder / "model.safetensors"
    temperature = None
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as tensors:
            if "logit_scale" in tensors.keys():  # noqa: SIM118  (safe_open is no mapping)
                scale = float(tensors.get_tensor("logit_scale"))
                # Rounded so CLIP's ln(100) gives exactly its clamp, 0.01.
                temperature = round(1.0 / math.exp(scale), 6)
    return ClipFolder(folder, int(config.get("projection_dim", 512)), temperature)


def fill_from_clip_folder(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw trial config with what a pretrained CLIP decides filled in where the config
    leaves it out: the text tower's folder (the image tower's), `model.embed_dim` (the
    folder's projection size) and `loss.temperature` (its learned temperature). The filled
    values are part of the resolved config, so they show in every record and in the key."""
    model = raw.get("model")
    if not isinstance(model, dict):
        return raw
    sides = {side: model.get(side) for side in ("image", "text")}
    clip = {s: t for s, t in sides.items() if isinstance(t, dict) and t.get("kind") == KIND}
    if not clip:
        return raw
    image_path = (clip.get("image") or {}).get("path")
    usable = isinstance(image_path, str) and clip_folder_problem(image_path) is None
    if "text" in clip and clip["text"].get("path") is None and usable:
        clip["text"] = {**clip["text"], "path": image_path}  # one problem is said once
    path = next((t["path"] for t in clip.values() if isinstance(t.get("path"), str)), None)
    model = {**model, **clip}
    if path is None or clip_folder_problem(path) is not None:
        return {**raw, "model": model}  # the tower config's validator names the problem
    folder = read_clip_folder(path)
    model.setdefault("embed_dim", folder.projection_dim)
    loss = raw.get("loss")
    if folder.temperature is not None and (loss is None or isinstance(loss, dict)):
        loss = {"temperature": folder.temperature, **(loss or {})}
    return {**raw, "model": model, **({"loss": loss} if loss is not None else {})}
