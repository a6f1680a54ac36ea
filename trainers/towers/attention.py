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
