"""The `image_text` data set: the user's folder of images with captions, from a CSV (`path`,
`caption` columns), a JSONL (one {"path", "caption"} object a line) or a COCO captions JSON."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import torch

from trainers.config import ImageTextDataConfig
from trainers.data.image_files import check_readable, image_source
from trainers.data.paired import (
    InputSpec,
    PairedData,
    PairedSplit,
    held_out_order,
    text_split,
    token_spec,
)
from trainers.data.tokenizer import WordTokenizer
from trainers.errors import DataError


def make_image_text(config: ImageTextDataConfig, seed: int) -> PairedData:
    """Pairs of the captions file, split by image (an image and all its captions fall on one
    side); n_train and n_eval count images. An image with several captions (COCO's five) is a
    row per caption: training passes over images with one caption each per epoch, and in
    retrieval any caption of an image is a hit. With one caption per image, as before, equal
    captions are interchangeable instead."""
    captions_file = Path(config.captions)
    root = Path(config.root) if config.root is not None else captions_file.parent
    pairs = read_captions(captions_file)
    images = list(dict.fromkeys(path for path, _ in pairs))
    n = len(images)
    n_train = n - config.n_eval if config.n_train is None else config.n_train
    if n_train < 2 or n_train + config.n_eval > n:
        raise DataError(
            f"{captions_file}: {n} images cannot give n_train {n_train} and n_eval {config.n_eval}"
        )
    order = held_out_order(n, seed)
    tokenizer = WordTokenizer.from_texts(caption for _, caption in pairs)
    captions_of: dict[str, list[str]] = {}
    for path, caption in pairs:
        captions_of.setdefault(path, []).append(caption)
    several = any(len(c) > 1 for c in captions_of.values())
    splits = [
        _split([images[i] for i in idx.tolist()], captions_of, root, config, tokenizer, several)
        for idx in (order[:n_train], order[n - config.n_eval :])
    ]
    return PairedData(
        train=splits[0],
        eval=splits[1],
        a_input=InputSpec("image", (3, config.image_size, config.image_size)),
        b_input=token_spec(tokenizer),
        tokenizer=tokenizer,
    )


def _split(
    chosen: list[str],
    captions_of: dict[str, list[str]],
    root: Path,
    config: ImageTextDataConfig,
    tokenizer: WordTokenizer,
    several: bool,
) -> PairedSplit:
    """A row per (image, caption) of the chosen images; the images are read as batches need
    them (image_files.py)."""
    rows = [(k, caption) for k, path in enumerate(chosen) for caption in captions_of[path]]
    image_of = torch.tensor([k for k, _ in rows], dtype=torch.int64)
    paths = [root / chosen[k] for k, _ in rows]
    check_readable(dict.fromkeys(paths))
    images = image_source(paths, config)
    split = text_split(images, [c for _, c in rows], tokenizer, None)
    if not several:
        return split
    return replace(split, match_ids=image_of, items=image_of)


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
