"""Images read from disk as they are needed: the a-side of the folder data sets (`image_text`,
`image_folder`), so that a trial's memory does not grow with the folder.

A split holds only the file paths. Batches are decoded and resized by a DataLoader's worker
processes while the towers work on the previous one, and on CUDA they come in pinned memory.
With a cache folder, every file is decoded once per image size into a uint8 array file shared
by all the trials of a sweep (a quarter of float32's size, read back without decoding).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from trainers.config import ImageFolderDataConfig, ImageTextDataConfig
from trainers.errors import DataError

CACHE_SUFFIX = ".u8"
_MARK = "\x1e"  # ASCII record separator: around a worker's message, found again in the parent


@dataclass(frozen=True, eq=False)
class ImageFiles(Dataset[torch.Tensor]):
    """Row i is the image `files[file_of[i]]` as (3, size, size) float32 in [0, 1]; rows may
    share a file (an image with several captions)."""

    files: tuple[Path, ...]
    file_of: np.ndarray  # (rows,) int64
    size: int
    workers: int = 2
    cache: Path | None = None  # a filled cache of `files` (fill_cache), read instead of them

    @classmethod
    def of(cls, paths: Sequence[Path], size: int, workers: int) -> ImageFiles:
        """One row per path; equal paths share a file."""
        files = list(dict.fromkeys(paths))
        index = {path: k for k, path in enumerate(files)}
        rows = np.array([index[p] for p in paths], dtype=np.int64)
        return cls(tuple(files), rows, size, workers)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.size, self.size)

    def __len__(self) -> int:
        return int(self.file_of.shape[0])

    def __getitem__(self, index: int | slice | torch.Tensor) -> torch.Tensor:
        """One row (3, size, size), or the rows a slice or index tensor picks, stacked."""
        if isinstance(index, int) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            return self._read(int(self.file_of[int(index)]))
        rows = np.arange(len(self))[index] if isinstance(index, slice) else index.cpu().numpy()
        return torch.stack([self._read(int(self.file_of[i])) for i in rows.tolist()])

    def loader(self, rows: Iterable[list[int]], pin: bool) -> Iterator[torch.Tensor]:
        """Batches of the given rows, in order, decoded by `workers` processes."""
        loader = DataLoader(
            self,
            batch_sampler=rows,
            num_workers=self.workers,
            pin_memory=pin,
            prefetch_factor=2 if self.workers else None,
        )
        try:
            yield from loader
        except DataError as exc:
            # A worker's error comes back as a new DataError holding the worker's whole traceback
            # in torch's words; ours is the part between the marks _read put around it.
            found = re.search(f"{_MARK}(.*?){_MARK}", str(exc), re.DOTALL)
            raise DataError(found.group(1) if found else str(exc)) from None

    def cached_in(self, folder: Path) -> ImageFiles:
        """These rows read from a uint8 cache in `folder`, filled first if it is not there."""
        path = folder / f"{self._key()}{CACHE_SUFFIX}"
        if not path.is_file():
            fill_cache(self, path)
        return ImageFiles(self.files, self.file_of, self.size, self.workers, path)

    def content_key(self) -> str:
        """Names the rows' pixels: the files' content key and which file each row shows."""
        digest = hashlib.sha256(self._key().encode())
        digest.update(self.file_of.astype(np.int64).tobytes())
        return digest.hexdigest()[:32]

    def _read(self, file: int) -> torch.Tensor:
        if self.cache is None:
            try:
                return load_image(self.files[file], self.size)
            except DataError as exc:
                if get_worker_info() is None:
                    raise
                raise DataError(f"{_MARK}{exc}{_MARK}") from None
        count = 3 * self.size * self.size
        pixels = np.fromfile(self.cache, dtype=np.uint8, count=count, offset=file * count)
        return torch.from_numpy(pixels.astype(np.float32) / 255.0).view(3, self.size, self.size)

    def _key(self) -> str:
        """Names the decoded content: the size and each file's path, length and change time,
        so that an edited or replaced image makes a new cache instead of reading a stale one."""
        digest = hashlib.sha256(f"{self.size}\n".encode())
        for path in self.files:
            stat = path.stat()
            digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32]


def in_order(n: int, size: int) -> list[list[int]]:
    """Rows 0..n-1 in batches of `size`."""
    return [list(range(start, min(start + size, n))) for start in range(0, n, size)]


def fill_cache(images: ImageFiles, path: Path) -> None:
    """Decode every file of `images` once into `path`, written beside it and renamed into place,
    so trials filling the same cache at once each leave a whole file and none reads a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    files = ImageFiles.of(images.files, images.size, images.workers)
    try:
        with partial.open("wb") as out:
            for batch in files.loader(in_order(len(files), 64), pin=False):
                out.write((batch * 255.0).round().to(torch.uint8).numpy().tobytes())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


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


def image_source(
    paths: Sequence[Path], config: ImageTextDataConfig | ImageFolderDataConfig
) -> ImageFiles:
    """The rows of `paths` as the data config reads them: streamed, through its cache if any."""
    images = ImageFiles.of(paths, config.image_size, config.loader_workers)
    return images if config.cache is None else images.cached_in(Path(config.cache).expanduser())


def check_readable(paths: Iterable[Path]) -> None:
    """A missing file is found before training starts rather than in a worker mid-epoch."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: image not found{more}")
