"""Model FLOPs per clip from the geometry, and the accelerator's peak to compare them with.

One pretraining clip (N = t*h*w tokens, Nv = visible, Nm = N - Nv hidden, D / Dd encoder /
decoder width, C target values per token): the patch embedding runs on all N cubes, the
encoder on the Nv visible tokens, the decoder on all N tokens, the head on the Nm hidden
ones (with dual masking, train/pretraining/dual.py: the decoder on Nv + Nd tokens, the head on
the Nd hidden ones it reconstructs). Counted: every matrix product (2 FLOPs per multiply-add), attention's two products
(QK^T and AV: 4 * n^2 * width per block), the patch embedding as the matrix product it is.
Not counted: norms, softmax, GELU, adds (a few % of a ViT-B, and not on the tensor cores
that the peak numbers describe). Training = 3x the forward (backward = 2x: gradients for
the inputs and for the weights), the usual convention for MFU (PaLM, appendix B); the
backward skips the input gradient of the patch embedding, so the counted total is 3F minus
one patch embedding (`tests/train/pretraining/test_flops.py` checks both against a FLOP counter).
"""
from __future__ import annotations

from train.pretraining.masks import get_mask
from train.pretraining.model import MODELS, HeadsSpec, ModelSize, as_heads

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched by
# substring of torch.cuda.get_device_name(); the first match wins, so specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H200", 989.0),         # SXM; the NVL card is lower (~835)
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),         # SXM ("H100 80GB HBM3")
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),          # AWS's A10 variant
    ("A10", 125.0),
    ("V100", 125.0),         # fp16 tensor cores; V100 has no bf16: autocast bf16 runs far below this
    ("T4", 65.0),            # fp16, same caveat
)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a device by its name, None when the table does not know it."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def hidden_tokens(mask: str, grid: tuple[int, int, int], ratio: float) -> int:
    """Hidden tokens per clip, the same in every sample: the mask's record says (`Mask.hidden`)."""
    return get_mask(mask).hidden(grid, ratio)


def _blocks(tokens: int, width: int, depth: int, mlp_ratio: float) -> int:
    """Forward FLOPs of `depth` pre-norm transformer blocks on `tokens` tokens."""
    linear = 2 * tokens * width * (3 * width + width + 2 * int(mlp_ratio * width))   # qkv, proj, fc1 + fc2
    attention = 4 * tokens * tokens * width                                          # QK^T and AV
    return depth * (linear + attention)


def patch_embed_flops(grid: tuple[int, int, int], dim: int, tubelet: int, patch: int, in_chans: int = 3) -> int:
    t, h, w = grid
    return 2 * t * h * w * in_chans * tubelet * patch * patch * dim


def head_flops(in_dim: int, heads: HeadsSpec) -> int:
    """FLOPs of the prediction heads on one token: a Linear each, or MME's Linear -> GELU -> Linear."""
    return sum(2 * (in_dim * h.hidden + h.hidden * h.dim) if h.hidden > 0 else 2 * in_dim * h.dim
               for h in as_heads(heads))


def forward_flops(size: ModelSize | str, grid: tuple[int, int, int], visible: int, out_dim: HeadsSpec,
                  tubelet: int = 2, patch: int = 16, decoder_depth: int | None = None,
                  decoder_dim: int | None = None, decoded: int | None = None) -> int:
    """Forward FLOPs of one pretraining clip with `visible` tokens kept for the encoder and
    `decoded` hidden tokens reconstructed (None = all of them; fewer with dual masking: the
    decoder then runs on visible + decoded tokens, the heads on the decoded ones)."""
    s = MODELS[size] if isinstance(size, str) else size
    t, h, w = grid
    decoded = t * h * w - visible if decoded is None else decoded
    dd = s.decoder_dim if decoder_dim is None else decoder_dim
    depth = s.decoder_depth if decoder_depth is None else decoder_depth
    return (patch_embed_flops(grid, s.dim, tubelet, patch)
            + _blocks(visible, s.dim, s.depth, s.mlp_ratio)
            + 2 * visible * s.dim * dd                                   # decoder_embed
            + _blocks(visible + decoded, dd, depth, s.mlp_ratio)
            + decoded * head_flops(dd, out_dim))                         # heads on the reconstructed tokens


def train_flops(size: ModelSize | str, grid: tuple[int, int, int], visible: int, out_dim: HeadsSpec,
                tubelet: int = 2, patch: int = 16, decoder_depth: int | None = None,
                decoder_dim: int | None = None, decoded: int | None = None) -> int:
    """FLOPs of one clip's forward + backward: 3x the forward (see the module docstring)."""
    return 3 * forward_flops(size, grid, visible, out_dim, tubelet, patch, decoder_depth, decoder_dim, decoded)
