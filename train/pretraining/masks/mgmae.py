"""Motion-guided masking of MGMAE (Huang et al. ICCV'23), following their public code.

1. A visibility score map on the base frame (time slice of frame T//2), MGMAE's
   `MixGaussianInitialMaskingGenerator` (`dataset/masking_generator.py`, default
   `method='max'`): one Gaussian per visible token, centred on distinct random token
   centres, `exp(-|p - c|^2 / patch^2)` (their `gaussian_2d` with `std_x = std_y =
   patch_size` and no factor 2), combined by their **max** and divided by the map's max;
   evaluated at the 8 px cell centres. Its top-k tokens are exactly the Gaussians' tokens:
   the base slice's visible set is a uniform random set of tokens (docs/masks.md).
2. The map is carried to the other slices by backward warping with `grid_sample`, one
   slice at a time, along the *camera-inclusive* optical flow (the stored compensated
   flow plus the homography's displacement, composed over the frames of a tubelet by
   `train/clips/dataset.py`): the visible cubes follow the content as it actually moves on screen,
   camera motion included, as RAFT flow does in MGMAE.
   - before the base slice the forward flow s -> s+1 lives on the grid of s, exactly what
     a backward warp of slice s needs: M_s(p) = M_{s+1}(p + F_s(p)). (MGMAE's code uses
     the flow of the wrong direction here; we use the correct one.)
   - after the base slice a backward warp needs the flow s -> s-1 on the grid of s; we
     store forward flow only, so it is obtained by fixed-point inversion of F_{s-1}:
     B(p) = -F_{s-1}(p + B(p)), 3 iterations.
3. Where a warp samples outside the frame (a hole) the score comes from the initial map.
4. Per slice the top-k tokens by mean score stay visible, k = h*w - round(ratio*h*w).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from train.pretraining.masks.common import clip_frames, hidden_per_slice, hide_lowest
from train.pretraining.masks.record import Mask

NEEDS: frozenset[str] = frozenset({"flow"})
INVERSION_STEPS = 3


def cell_centres(hc: int, wc: int, cell: int = 8) -> torch.Tensor:
    """(Hc, Wc, 2) pixel coordinates (x, y) of cell centres: (8 j + 3.5, 8 i + 3.5)."""
    ys, xs = torch.meshgrid(torch.arange(hc, dtype=torch.float32), torch.arange(wc, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys], -1) * cell + (cell - 1) / 2


def sample(field: torch.Tensor, pos: torch.Tensor, cell: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear lookup of a cell-grid field at pixel positions.

    field (B,C,Hc,Wc), pos (B,Hc,Wc,2) pixels (x, y) -> values (B,C,Hc,Wc), inside (B,Hc,Wc) bool.
    """
    hc, wc = field.shape[-2:]
    u = (pos - (cell - 1) / 2) / cell                                  # cell units
    size = torch.tensor([max(wc - 1, 1), max(hc - 1, 1)], dtype=pos.dtype)
    grid = 2 * u / size - 1
    inside = ((u[..., 0] >= -0.5) & (u[..., 0] <= wc - 0.5) & (u[..., 1] >= -0.5) & (u[..., 1] <= hc - 0.5))
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True), inside


def compose(flows: torch.Tensor) -> torch.Tensor:
    """Chain forward flows (B,K,Hc,Wc,2) of consecutive frames into one (B,Hc,Wc,2), first frame's grid."""
    p0 = cell_centres(*flows.shape[2:4])
    total = flows[:, 0]
    for k in range(1, flows.shape[1]):
        step, _ = sample(flows[:, k].permute(0, 3, 1, 2), p0 + total)
        total = total + step.permute(0, 2, 3, 1)
    return total


def invert(flow: torch.Tensor, steps: int = INVERSION_STEPS) -> torch.Tensor:
    """Backward flow on the second frame's grid from a forward flow (B,Hc,Wc,2) on the first's."""
    p = cell_centres(*flow.shape[1:3])
    back = -flow
    for _ in range(steps):
        fwd, _ = sample(flow.permute(0, 3, 1, 2), p + back)
        back = -fwd.permute(0, 2, 3, 1)
    return back


def initial_map(B: int, grid: tuple[int, int], cells: tuple[int, int], num_visible: int,
                generator: torch.Generator, cell: int = 8) -> torch.Tensor:
    """(B,1,Hc,Wc) MGMAE's initial visibility map on the cell grid.

    `num_visible` Gaussians per sample on distinct random token centres ((P-1)/2 + P j px,
    P = token side in px, as their `rand_pos * patch_size + (patch_size - 1) / 2`), each
    exp(-d^2 / P^2) (their `gaussian_2d`, std = patch_size, peak 1), max over Gaussians, / max.
    """
    (h, w), (hc, wc) = grid, cells
    patch = cell * (hc // h)                                                     # token side, px
    k = max(num_visible, 1)  # a slice with nothing visible still needs a map to warp (any map)
    token = torch.rand(B, h * w, generator=generator).argsort(-1)[:, :k]           # (B,K) distinct
    centres = torch.stack([token % w, token // w], -1).float() * patch + (patch - 1) / 2   # (B,K,2) px (x, y)
    p = cell_centres(hc, wc).reshape(1, 1, hc * wc, 2)
    d2 = ((p - centres[:, :, None]) ** 2).sum(-1)                                # (B,K,Hc*Wc)
    score = torch.exp(-d2 / patch ** 2).amax(1)                                  # (B,Hc*Wc)
    return (score / score.amax(-1, keepdim=True)).reshape(B, 1, hc, wc)


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    t, h, w = grid
    flow = batch["flow"].float()                                   # (B,T-1,Hc,Wc,2) camera-inclusive, px
    B, _, hc, wc, _ = flow.shape
    T = clip_frames(batch)[1]
    tau = T // t
    base = (T // 2) // tau
    p = cell_centres(hc, wc)
    # slice-to-slice flows s -> s+1 (B,Hc,Wc,2), composed over the tau frames in between
    slice_flow = [compose(flow[:, s * tau:(s + 1) * tau]) for s in range(t - 1)]

    hidden = hidden_per_slice(grid, ratio)
    init = initial_map(B, (h, w), (hc, wc), h * w - hidden, generator)
    maps = [None] * t
    maps[base] = init
    for s in range(base - 1, -1, -1):
        warped, inside = sample(maps[s + 1], p + slice_flow[s])
        maps[s] = torch.where(inside[:, None], warped, init)
    for s in range(base + 1, t):
        warped, inside = sample(maps[s - 1], p + invert(slice_flow[s - 1]))
        maps[s] = torch.where(inside[:, None], warped, init)

    score = F.avg_pool2d(torch.cat(maps, 1), hc // h).reshape(B, t, h * w)        # (B,t,h*w)
    score = score + 1e-6 * torch.rand(score.shape, generator=generator)
    return hide_lowest(score, hidden).reshape(B, t * h * w)


MASK = Mask("mgmae", mask, NEEDS, cost=2)
