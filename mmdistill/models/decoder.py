"""The VideoMAE pretraining model: encoder + light decoder that predicts masked tubelets.

Parameter names follow the official pretraining layout (`encoder.*`, `encoder_to_decoder.weight`,
`mask_token`, `decoder.blocks.*`, `decoder.norm.*`, `decoder.head.*`), so our pretraining
checkpoints load as teachers through the same path as official ones (encoder picked automatically).
"""
from __future__ import annotations

import math

import gin
import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from mmdistill.models.pos_embed import Grid, resample_pos_embed, sinusoid_table
from mmdistill.models.vit import LayerNorm, QVBiasAttention, VideoViT


class MAEDecoder(nn.Module):
    """Blocks over [visible + mask tokens] with fixed sinusoid positions; predicts masked ones."""

    def __init__(self, num_patches: int, out_dim: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.register_buffer("pos_embed", sinusoid_table(num_patches, embed_dim), persistent=False)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, norm_layer=LayerNorm,
                  attn_layer=QVBiasAttention) for _ in range(depth)])
        self.norm = LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, out_dim)

    def use_sincos_table_of(self, source_grid: Grid, grid: Grid) -> None:
        """The fixed table of `source_grid` resampled to `grid`, like the encoder's after loading
        a checkpoint trained at another input size (`VideoViT.use_sincos_table_of`)."""
        table = sinusoid_table(math.prod(source_grid), self.pos_embed.shape[-1])
        with torch.no_grad():
            self.pos_embed.copy_(resample_pos_embed(table, source_grid, grid))

    def forward(self, x: torch.Tensor, num_masked: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -num_masked:]))


@gin.configurable("mae", denylist=["encoder", "action_head"])
class MaskedAutoencoder(nn.Module):
    """Encoder sees only visible tokens; the decoder reconstructs every masked tubelet.

    decoder_dim/depth/heads default to VideoMAE's small/base decoder (384 wide, 4 blocks, 6 heads)
    scaled down for narrow encoders. `action_head` (stage-1 pretraining with labelled source
    clips, `mmdistill.models.heads.ActionHead`) is trained and saved with it under
    `action_head.`; teachers built from the checkpoint take `encoder.` only.
    """

    def __init__(self, encoder: VideoViT, decoder_dim: int | None = None, decoder_depth: int = 4,
                 decoder_heads: int | None = None, action_head: nn.Module | None = None):
        super().__init__()
        arch = encoder.arch
        decoder_dim = decoder_dim or min(384, encoder.embed_dim)
        decoder_heads = decoder_heads or max(1, decoder_dim // 64)
        self.encoder = encoder
        self.tubelet_size, self.patch_size = arch["tubelet_size"], arch["patch_size"]
        out_dim = arch["in_chans"] * self.tubelet_size * self.patch_size ** 2
        self.encoder_to_decoder = nn.Linear(encoder.embed_dim, decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.decoder = MAEDecoder(encoder.num_patches, out_dim, decoder_dim, decoder_depth,
                                  decoder_heads)
        if action_head is not None:  # registered only when present: no key in MAE-only runs
            self.action_head = action_head

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed", "mask_token"}

    def forward(self, x: torch.Tensor, visible_index: torch.Tensor,
                masked_index: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) and a tube mask's token indices (`mmdistill.data.masking.token_indices`)
        -> predictions (B, n_masked, out_dim) for the masked tokens, in `masked_index` order."""
        return self.decode(self.encode(x, visible_index, masked_index), visible_index,
                           masked_index)

    def encode(self, x: torch.Tensor, visible_index: torch.Tensor,
               masked_index: torch.Tensor) -> torch.Tensor:
        """The encoder's visible tokens (B, n_visible, D): what the decoder and the action head
        both read, so a source clip is encoded once."""
        num_tokens = self.encoder.num_patches
        if (visible_index.shape[0] != x.shape[0] or masked_index.shape[0] != x.shape[0]
                or visible_index.shape[1] + masked_index.shape[1] != num_tokens):
            raise ValueError(f"visible_index {tuple(visible_index.shape)} and masked_index "
                             f"{tuple(masked_index.shape)} must split the N = {num_tokens} tokens "
                             f"of each of the {x.shape[0]} clips: was the tube mask made for this "
                             f"encoder's token grid {self.encoder.grid_size}?")
        return self.encoder(x, visible_index)[0]

    def decode(self, visible: torch.Tensor, visible_index: torch.Tensor,
               masked_index: torch.Tensor) -> torch.Tensor:
        visible = self.encoder_to_decoder(visible)
        batch, dim = visible.shape[0], visible.shape[-1]
        pos = self.decoder.pos_embed.to(visible.dtype).expand(batch, -1, -1)
        pos_visible = torch.gather(pos, 1, visible_index.unsqueeze(-1).expand(-1, -1, dim))
        pos_masked = torch.gather(pos, 1, masked_index.unsqueeze(-1).expand(-1, -1, dim))
        tokens = torch.cat([visible + pos_visible, self.mask_token.to(visible.dtype) + pos_masked],
                           dim=1)
        return self.decoder(tokens, pos_masked.shape[1])
