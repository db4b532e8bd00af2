"""The classifier that evaluation trains and tests: a pretrained (or random) encoder with a head."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from train.pretraining.config import TrainConfig
from train.pretraining.engine import load_checkpoint
from train.pretraining.model import VideoMAE, build_model

from train.eval.config import GEOMETRY, EvalConfig


class VideoClassifier(nn.Module):
    """VideoMAE's fine-tuning model on a pretrained encoder (its modules, shared, decoder left out).

    video (B,3,T,H,W) -> tokens (B,N,D) + positions -> blocks -> norm -> mean (B,D)
    -> fc_norm -> head (B,classes). `forward_features` is the linear probe's feature.
    """

    def __init__(self, mae: VideoMAE, num_classes: int):
        super().__init__()
        dim = mae.norm.normalized_shape[0]
        self.patch_embed, self.blocks, self.norm = mae.patch_embed, mae.blocks, mae.norm
        self.register_buffer("pos_embed", mae.pos_embed, persistent=False)
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # VideoMAE: std 0.02 x init_scale 0.001
        nn.init.zeros_(self.head.bias)

    def forward_tokens(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(video) + self.pos_embed                          # (B,N,D)
        return self.norm(self.blocks(x))                                      # (B,N,D)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(video).mean(1)                             # (B,D)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_norm(features))                              # (B,classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))


def load_encoder(cfg: EvalConfig) -> tuple[VideoMAE, EvalConfig, dict]:
    """The pretrained (or random) MAE, the config with its geometry filled in, and checkpoint info."""
    if cfg.checkpoint == "random":
        base, state, info = TrainConfig(), None, {"checkpoint": "random", "checkpoint_step": 0}
        out_dim = 1
    else:
        ckpt = load_checkpoint(cfg.checkpoint)
        base, state = TrainConfig.from_dict(ckpt["config"]), ckpt["model"]
        out_dim = ckpt.get("heads") or int(ckpt["out_dim"])  # heads: stored since MME's two heads
        info = {"checkpoint": str(cfg.checkpoint), "checkpoint_step": int(ckpt["step"]),
                "pretrain_config": ckpt["config"]}
    cfg = replace(cfg, **{k: getattr(base, k) if getattr(cfg, k) is None else getattr(cfg, k) for k in GEOMETRY})
    grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)
    torch.manual_seed(cfg.seed)
    mae = build_model(cfg.model, grid, out_dim, cfg.tubelet, cfg.patch_size, base.decoder_depth,
                      cfg.drop_path if cfg.finetune else 0.0, cfg.positions, base.decoder_dim)
    if state is not None:
        mae.load_state_dict(state)
    return mae, cfg, info


# ---- data -------------------------------------------------------------------------------------

