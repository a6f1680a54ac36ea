"""A CLIP checkpoint folder with random weights, as `save_pretrained` writes a downloaded one:
config, safetensors weights, image processor and tokenizer. The GPU benchmark loads it through
the product's `clip_pretrained` towers, so the fine-tuning step it times is the one a user's
checkpoint gets, without downloading one.

CLIPConfig's defaults are OpenAI's ViT-B/32: 224 px images in 32 px patches, a 768-wide,
12-layer vision transformer; a 512-wide, 12-layer text transformer over 77 tokens of a
49,408-word vocabulary; 512-d embeddings. The tokenizer is word-level over made-up words with
CLIP's special ids (end-of-text the highest, as transformers' pooling expects): the step runs on
token ids, and only the end-of-text id matters to the tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY: dict[str, Any] = {
    "text_config": {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                    "num_hidden_layers": 1, "num_attention_heads": 2,
                    "max_position_embeddings": 16, "bos_token_id": 62, "eos_token_id": 63,
                    "pad_token_id": 63},
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    "projection_dim": 16,
}  # fmt: skip


def save_random_clip(folder: Path, tiny: bool = False) -> tuple[Path, int, int, int]:
    """Write the folder; returns it with its image size, context length and vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    config = CLIPConfig(**TINY) if tiny else CLIPConfig()
    text: Any = config.text_config
    vision: Any = config.vision_config
    vocab_size = text.vocab_size
    bos, eos = vocab_size - 2, vocab_size - 1
    text.pad_token_id = eos  # CLIP's tokenizer pads with end-of-text
    CLIPModel(config).save_pretrained(folder)
    side = vision.image_size
    CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(folder)
    words = {f"w{i}": i for i in range(bos)}
    vocab = {**words, "<|startoftext|>": bos, "<|endoftext|>": eos}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)],
    )
    PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        unk_token="w0",
        pad_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        model_max_length=text.max_position_embeddings,
    ).save_pretrained(folder)
    return folder, side, text.max_position_embeddings, vocab_size
