"""The classifier that evaluation trains and tests: a pretrained (or random) encoder with a head."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from train.pretraining.config import TrainConfig
from train.checkpoints.adopt import adopt, check_geometry, file_settings, run_geometry
from train.checkpoints.foreign import read_weights
from train.pretraining.model import VideoMAE, build_model

from train.eval.config import GEOMETRY, EvalConfig


class VideoClassifier(nn.Module):
    """VideoMAE's fine-tuning model on a pretrained encoder (its modules, shared, decoder left out).

    video (B,3,T,H,W) -> tokens (B,N,D) + positions -> blocks -> norm -> mean (B,D)
    -> fc_norm -> head (B,classes). `forward_features` is the linear probe's feature.
    """

    def __init__(self, mae: VideoMAE, num_classes: int):
        super().__init__()
        dim = mae.patch_embed.proj.out_channels
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
    weights = None if cfg.checkpoint == "random" else read_weights(cfg.checkpoint)
    if weights is None:
        base, info, out_dim = TrainConfig(), {"checkpoint": "random", "checkpoint_step": 0}, 1
    else:
        base, out_dim = TrainConfig.from_dict(file_settings(weights)), weights.heads or 1
        info = {"checkpoint": str(cfg.checkpoint), "checkpoint_step": weights.step,
                "checkpoint_format": weights.format, "pretrain_config": weights.config}
    cfg = replace(cfg, **{k: getattr(base, k) if getattr(cfg, k) is None else getattr(cfg, k) for k in GEOMETRY})
    if cfg.token_norm is None:
        cfg = replace(cfg, token_norm=weights is None or weights.geometry["token_norm"] is not False)
    grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)
    torch.manual_seed(cfg.seed)
    mae = build_model(cfg.model, grid, out_dim, cfg.tubelet, cfg.patch_size, base.decoder_depth,
                      cfg.drop_path if cfg.finetune else 0.0, cfg.positions, base.decoder_dim)
    if not cfg.token_norm:  # VideoMAE's mean pooling: tokens -> mean -> fc_norm, no norm before the mean
        mae.norm = nn.Identity()
    if weights is not None:
        run = run_geometry(mae, cfg.num_frames, cfg.input_size, cfg.positions)
        info["checkpoint_notes"] = check_geometry(weights, run) + adopt(mae, weights)
        info["weights"] = weights  # the classifier's part: evaluate() loads it once the classes are known
    return mae, cfg, info


# ---- data -------------------------------------------------------------------------------------

