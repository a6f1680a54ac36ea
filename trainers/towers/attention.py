"""The attention mask the transformer towers hand to transformers, built on the device.

Given a 2-D padding mask, transformers inspects it on the host at every forward (whether any
token is padded, to pick an attention kernel): on a GPU that is a host-device sync per step. A
ready 4-D mask is taken as it is, so the towers build one from the token ids: an additive
float32 bias, 0 where a position may attend and the most negative float where it may not.
"""

from __future__ import annotations

import torch

PAD_ID = 0  # the word tokenizer's [PAD]; the pretrained towers' tokenizers use 0 too


def attention_bias(tokens: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) bias over (query, key) of token ids (B, L) padded with PAD_ID: padded keys
    are masked, and with `causal` every later key too (CLIP's text transformer)."""
    return bias_of(tokens != PAD_ID, causal)


def bias_of(real: torch.Tensor, causal: bool) -> torch.Tensor:
    """The bias of `attention_bias` from a (B, L) mask of the real (not padding) positions."""
    length = real.shape[1]
    keep = real[:, None, None, :].expand(-1, 1, length, length)
    if causal:
        keep = keep & torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    bias = torch.zeros(keep.shape, dtype=torch.float32, device=real.device)
    return bias.masked_fill(~keep, torch.finfo(torch.float32).min)


def pool_tokens(hidden: torch.Tensor, tokens: torch.Tensor, how: str) -> torch.Tensor:
    """(B, H) one state per caption from (B, L, H) states of (B, L) token ids padded with PAD_ID:
    `cls`, the first position; `eot`, the last real token (CLIP's end-of-text position, the only
    one that read the whole caption under a causal mask); `mean`, the mean over real tokens."""
    real = tokens != PAD_ID
    if how == "cls":
        return hidden[:, 0]
    if how == "eot":
        last = (real.sum(dim=1) - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "mean":
        weights = real.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {how!r}")
