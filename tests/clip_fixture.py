"""Small real artefacts for the pretrained-CLIP tests, made here with nothing downloaded: a tiny
transformers CLIPModel with random weights, its image processor and a word-level tokenizer
saved with save_pretrained, a folder of PNG images with a captions CSV, and a labelled folder of
PNG images, one subfolder per class (ImageFolder's layout)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from trainers.config import ShapesDataConfig
from trainers.data.shapes import caption_vocabulary, make_shapes

PROJECTION_DIM = 8
IMAGE_SIZE = 32
# The classes of the labelled folder, named in words the tiny CLIP's tokenizer knows.
CLASS_COLOURS = {"red_square": (220, 30, 30), "blue_square": (30, 30, 220), "green": (30, 200, 30)}
# As in OpenAI's CLIP, end-of-text has the highest id (transformers' own pooling relies on it).


def save_tiny_clip(folder: Path, temperature: float = 0.05) -> Path:
    """A CLIP folder as save_pretrained writes it, whose logit_scale is ln(1 / temperature)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = sorted({w for text in caption_vocabulary() for w in text.split()})
    tokens = ["<pad>", "<unk>", *words, "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 16,
            "pad_token_id": 0, "bos_token_id": bos, "eos_token_id": eos,
        },
        vision_config={
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": 8,
        },
        projection_dim=PROJECTION_DIM,
        logit_scale_init_value=math.log(1.0 / temperature),
    )  # fmt: skip
    CLIPModel(config).save_pretrained(folder)
    size = {"shortest_edge": IMAGE_SIZE}
    CLIPImageProcessor(
        size=size, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)],
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        model_max_length=16,
    ).save_pretrained(folder)
    return folder


def save_caption_folder(folder: Path, n: int, seed: int = 0) -> Path:
    """`n` PNG images of coloured shapes with a captions.csv (path, caption); returns the CSV."""
    from PIL import Image

    data = make_shapes(ShapesDataConfig(n_train=n, n_eval=8, image_size=24, noise=0.0), seed)
    folder.mkdir(parents=True, exist_ok=True)
    captions = folder / "captions.csv"
    with captions.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "caption"])
        for i, (image, caption) in enumerate(
            zip(data.train.a, data.train.b_texts or (), strict=True)
        ):
            pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:05d}.png")
            writer.writerow([f"{i:05d}.png", caption])
    return captions


def save_labelled_folder(root: Path, per_class: int, size: int = 16) -> Path:
    """A subfolder of `per_class` noisy single-colour PNGs (size x size) per class of
    CLASS_COLOURS, and a file that is no image, which the folder data set must skip."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in CLASS_COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    (root / "green" / "notes.txt").write_text("not an image")
    return root
