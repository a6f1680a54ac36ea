"""The `image_text` data set: the user's folder of images with captions, from a CSV (`path`,
`caption` columns), a JSONL (one {"path", "caption"} object a line) or a COCO captions JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from trainers.config import ImageTextDataConfig
from trainers.data.paired import InputSpec, PairedData, held_out_order, text_split, token_spec
from trainers.data.tokenizer import WordTokenizer
from trainers.errors import DataError


def make_image_text(config: ImageTextDataConfig, seed: int) -> PairedData:
    captions_file = Path(config.captions)
    root = Path(config.root) if config.root is not None else captions_file.parent
    pairs = read_captions(captions_file)
    n = len(pairs)
    n_train = n - config.n_eval if config.n_train is None else config.n_train
    if n_train < 2 or n_train + config.n_eval > n:
        raise DataError(
            f"{captions_file}: {n} pairs cannot give n_train {n_train} and n_eval {config.n_eval}"
        )
    order = held_out_order(n, seed)
    chosen = {"train": order[:n_train], "eval": order[n - config.n_eval :]}
    tokenizer = WordTokenizer.from_texts(caption for _, caption in pairs)
    splits = {}
    for name, idx in chosen.items():
        images = torch.stack(
            [load_image(root / pairs[i][0], config.image_size) for i in idx.tolist()]
        )
        splits[name] = text_split(images, [pairs[i][1] for i in idx.tolist()], tokenizer, None)
    return PairedData(
        train=splits["train"],
        eval=splits["eval"],
        a_input=InputSpec("image", (3, config.image_size, config.image_size)),
        b_input=token_spec(tokenizer),
        tokenizer=tokenizer,
    )


def read_captions(path: Path) -> list[tuple[str, str]]:
    """(image path, caption) pairs from a CSV, JSONL or COCO captions JSON file."""
    if not path.is_file():
        raise DataError(f"{path}: no such captions file")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        pairs = _from_csv(path, text)
    elif suffix == ".jsonl":
        pairs = [_jsonl_pair(path, n, line) for n, line in _lines(text)]
    elif suffix == ".json":
        pairs = _from_coco(path, text)
    else:
        raise DataError(f"{path}: captions must be a .csv, .jsonl or COCO .json file")
    if not pairs:
        raise DataError(f"{path}: no (image, caption) pairs in the file")
    return pairs


def load_image(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _from_csv(path: Path, text: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
        raise DataError(f"{path}: the CSV needs a header with columns path and caption")
    pairs = []
    for row in reader:
        if not row.get("path") or not row.get("caption"):
            raise DataError(f"{path}: line {reader.line_num}: empty path or caption")
        pairs.append((row["path"], row["caption"]))
    return pairs


def _jsonl_pair(path: Path, number: int, line: str) -> tuple[str, str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
    if not isinstance(item, dict) or not item.get("path") or not item.get("caption"):
        raise DataError(f"{path}: line {number}: needs non-empty keys path and caption")
    return str(item["path"]), str(item["caption"])


def _from_coco(path: Path, text: str) -> list[tuple[str, str]]:
    try:
        coco = json.loads(text)
        files = {int(im["id"]): str(im["file_name"]) for im in coco["images"]}
        return [(files[int(a["image_id"])], str(a["caption"])) for a in coco["annotations"]]
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc.msg})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: not a COCO captions file (images with id and file_name, annotations "
            f"with image_id and caption): missing {exc}"
        ) from None
