"""Dual masking (VideoMAE V2): the decoder reconstructs only a subset of the hidden tokens.

The encoder mask hides tokens as usual; a second, decoder mask keeps `decoder_ratio` of each
clip's hidden tokens (an exact count per clip, so a batch stays one rectangular tensor). The
decoder then runs on the visible tokens plus those, not on all N, and the loss is over those
alone. What it saves is decoder and head FLOPs (`train/pretraining/flops.py`, `decoded`); how it
relates to VideoMAE V2 and what that paper reports about accuracy: docs/design.md, "Dual masking".

Which hidden tokens (`DECODER_MASKS`):

- `running_cell` (VideoMAE V2's `run_cell`, the default): every 2 x 2 cell of a time slice keeps
  `4 x decoder_ratio` of its 4 tokens, in a pattern that shifts by one position of the cell from
  one slice to the next, from a random phase per clip (`running_cell`). The hidden tokens the
  pattern keeps are decoded; where their number is off the exact count, the difference is made
  up at random from the other hidden tokens, or taken off at random from the kept ones.
- `random`: the subset is drawn uniformly at random per clip.

    mask   (B,N) True = hidden from the encoder
    decode (B,N) True = hidden and reconstructed; decode <= mask, `decoded_tokens` per row
"""
from __future__ import annotations

from functools import lru_cache

import torch

DECODER_MASKS = ("running_cell", "random")


def decoded_tokens(hidden: int, decoder_ratio: float) -> int:
    """Hidden tokens the decoder reconstructs per clip: all of them at ratio 1, at least one."""
    return hidden if decoder_ratio >= 1.0 else max(1, round(decoder_ratio * hidden))


def cell_keeps(decoder_ratio: float) -> int:
    """Tokens of a 2 x 2 cell the running cell keeps for the decoder: 1, 2 or 3 (ratio 0.25, 0.5,
    0.75); ValueError for a ratio the cell cannot draw."""
    keep = round(4 * decoder_ratio)
    if not 1 <= keep <= 3 or abs(4 * decoder_ratio - keep) > 1e-6:
        raise ValueError(f"decoder_ratio {decoder_ratio:g} with decoder_mask running_cell: a 2 x 2 cell keeps "
                         f"1, 2 or 3 of its 4 tokens, so 0.25, 0.5 or 0.75; for another share use "
                         f"--decoder-mask random")
    return keep


def running_cell(grid: tuple[int, int, int], decoder_ratio: float, phase: int) -> torch.Tensor:
    """(N,) bool, True = kept for the decoder: the running-cell pattern of one clip at `phase`
    (0-3). Slice i uses the cell rotated by phase + i + 1 positions (VideoMAE V2 advances its cell
    before reading it); the cell's positions in order are (0,0), (0,1), (1,0), (1,1), the first
    4 - keep of the rotated queue dropped. An odd height or width cuts the last cell."""
    t, h, w = grid
    keep = cell_keeps(decoder_ratio)
    queue = torch.arange(4) >= 4 - keep                                   # dropped first, then kept
    slices = []
    for i in range(t):
        cell = queue[(torch.arange(4) + phase + i + 1) % 4].reshape(2, 2)
        slices.append(cell.repeat((h + 1) // 2, (w + 1) // 2)[:h, :w])
    return torch.stack(slices).flatten()


@lru_cache(maxsize=8)
def phase_patterns(grid: tuple[int, int, int], decoder_ratio: float) -> torch.Tensor:
    """(4, N) bool: `running_cell` at each of the 4 phases (made once per geometry: every step
    draws from them)."""
    return torch.stack([running_cell(grid, decoder_ratio, p) for p in range(4)])


def decoder_mask(mask: torch.Tensor, decoder_ratio: float, generator: torch.Generator,
                 grid: tuple[int, int, int] | None = None, kind: str = "random") -> torch.Tensor:
    """(B,N) bool: `decoded_tokens` of each row's hidden tokens, chosen by `kind` (`DECODER_MASKS`;
    `running_cell` needs the token `grid` (t, h, w)).

    The draw is made on the CPU from `generator` (the same subset on any device, and again on a
    resume) and moved to `mask`'s device."""
    hidden = int(mask[0].sum())
    keep = decoded_tokens(hidden, decoder_ratio)
    if keep == hidden:
        return mask
    if kind not in DECODER_MASKS:
        raise ValueError(f"unknown decoder mask {kind!r}; known: {', '.join(DECODER_MASKS)}")
    scores = torch.rand(mask.shape, generator=generator)                # (B,N) in [0, 1)
    if kind == "running_cell":
        if grid is None:
            raise ValueError("the running-cell decoder mask needs the token grid (t, h, w)")
        phases = torch.randint(0, 4, (mask.shape[0],), generator=generator)
        scores = scores + (~phase_patterns(tuple(grid), decoder_ratio)[phases]).float()                   # the cell's dropped tokens after its kept ones
    scores[~mask.cpu()] = 3.0                                           # visible tokens are never drawn
    picked = scores.topk(keep, dim=1, largest=False).indices            # (B,keep)
    out = torch.zeros(mask.shape, dtype=torch.bool)
    out.scatter_(1, picked, True)
    return out.to(mask.device, non_blocking=True)
