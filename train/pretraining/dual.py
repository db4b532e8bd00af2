"""Dual masking (VideoMAE V2): the decoder reconstructs only a subset of the hidden tokens.

The encoder mask hides tokens as usual; a second, decoder mask keeps `decoder_ratio` of each
clip's hidden tokens (an exact count, drawn at random per clip). The decoder then runs on the
visible tokens plus those, not on all N, and the loss is over those alone. What it saves is
decoder and head FLOPs (`train/pretraining/flops.py`, `decoded`); what VideoMAE V2 reports about
accuracy: docs/design.md, "Dual masking".

    mask   (B,N) True = hidden from the encoder
    decode (B,N) True = hidden and reconstructed; decode <= mask, `decoded_tokens` per row
"""
from __future__ import annotations

import torch


def decoded_tokens(hidden: int, decoder_ratio: float) -> int:
    """Hidden tokens the decoder reconstructs per clip: all of them at ratio 1, at least one."""
    return hidden if decoder_ratio >= 1.0 else max(1, round(decoder_ratio * hidden))


def decoder_mask(mask: torch.Tensor, decoder_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(B,N) bool: `decoded_tokens` of each row's hidden tokens, drawn uniformly without replacement.

    The draw is made on the CPU from `generator` (the same subset on any device, and again on a
    resume) and moved to `mask`'s device."""
    hidden = int(mask[0].sum())
    keep = decoded_tokens(hidden, decoder_ratio)
    if keep == hidden:
        return mask
    scores = torch.rand(mask.shape, generator=generator)                # (B,N)
    scores[~mask.cpu()] = 2.0                                           # visible tokens are never drawn
    picked = scores.topk(keep, dim=1, largest=False).indices            # (B,keep)
    out = torch.zeros(mask.shape, dtype=torch.bool)
    out.scatter_(1, picked, True)
    return out.to(mask.device, non_blocking=True)
