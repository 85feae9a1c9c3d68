"""VideoMAE-compatible video ViT built from timm parts.

State-dict keys are the official VideoMAE names (`patch_embed.proj`, `blocks.N.attn.qkv`,
`q_bias`, `v_bias`, `norm1`, `mlp.fc1`, `norm`, `fc_norm`, `pos_embed`), so official weights load
1:1; the one exception is layer scale, which timm names `blocks.N.ls1.gamma` (official
`gamma_1`) and `mmdistill.ckpt.keymaps` renames. Pooling follows the official switch:
`use_mean_pooling=False` (pretraining encoders) puts a LayerNorm `norm` after the blocks and pools
by a plain mean; `use_mean_pooling=True` (fine-tuned models) leaves the tokens un-normed and
normalises the mean with `fc_norm`.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any

import gin
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention, Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmdistill.models.pos_embed import Grid, resample_pos_embed, sinusoid_table

LayerNorm = partial(nn.LayerNorm, eps=1e-6)

# name -> (embed_dim, depth, num_heads); tiny is ours (CPU tests and the demo), the rest VideoMAE's.
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 4, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


def attention_width(embed_dim: int, num_heads: int) -> int:
    """The attention's inner width (q/k/v and proj input) under VideoMAE's rule
    head_dim = embed_dim // num_heads (MCG-NJU/VideoMAE modeling_finetune.py:61-64, Attention; the
    tennis fork keeps it in models/modeling_finetune.py:80-83): smaller than
    embed_dim when num_heads does not divide it, e.g. 12 heads x 85 = 1020 for 1024 wide."""
    return num_heads * (embed_dim // num_heads)


class QVBiasAttention(Attention):
    """timm attention with VideoMAE's bias layout: learned q and v biases, the k bias fixed at 0,
    and VideoMAE's head_dim = dim // num_heads (`attention_width`)."""

    def __init__(self, dim: int, num_heads: int = 8, **kwargs: Any):
        kwargs["qkv_bias"] = False  # the bias lives in q_bias / v_bias instead of qkv.bias
        kwargs.setdefault("attn_head_dim", dim // num_heads)
        super().__init__(dim, num_heads=num_heads, **kwargs)
        self.q_bias = nn.Parameter(torch.zeros(self.attn_dim))
        self.v_bias = nn.Parameter(torch.zeros(self.attn_dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        B, N, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None and attn_mask.dtype == torch.bool:  # True = attended
                attn = attn.masked_fill(~attn_mask, float("-inf"))
            elif attn_mask is not None:
                attn = attn + attn_mask
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(x))


class TubeletEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, N, D): one linear map per tubelet x patch x patch block.

    The weights are a Conv3d's (kernel = stride = the block), as in VideoMAE, so checkpoints load
    1:1; the forward cuts the blocks out and applies them as one matmul, the same arithmetic as
    Conv3d without its CPU kernel's overhead (bench/patch_embed.py, BENCHMARKS.md).
    Given `visible_index` (B, n) it cuts out and projects only those blocks: with a 75% tube mask
    the embedding (for 17 skeleton channels as costly as a tiny transformer) does a quarter of
    the work, and only the visible blocks are ever copied out of the input.
    """

    def __init__(self, in_chans: int, embed_dim: int, tubelet_size: int, patch_size: int):
        super().__init__()
        self.tubelet_size, self.patch_size = tubelet_size, patch_size
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> a view (B, T', H', W', C, tt, p, p): block (i, j, k) of clip b is
        [b, i, j, k], token (i * H' + j) * W' + k."""
        b, c, t, h, w = x.shape
        tt, p = self.tubelet_size, self.patch_size
        return x.reshape(b, c, t // tt, tt, h // p, p, w // p, p).permute(0, 2, 4, 6, 1, 3, 5, 7)

    def project(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, n, C * tt * p * p) cut-out blocks -> (B, n, D) tokens."""
        return F.linear(blocks, self.proj.weight.flatten(1), self.proj.bias)

    def forward(self, x: torch.Tensor, visible_index: torch.Tensor | None = None) -> torch.Tensor:
        blocks = self.blocks(x)
        b, grid_t, grid_h, grid_w = blocks.shape[:4]
        width = blocks[0, 0, 0, 0].numel()
        if visible_index is None:
            return self.project(blocks.reshape(b, grid_t * grid_h * grid_w, width))
        rows = torch.arange(b, device=x.device).unsqueeze(1)
        i = torch.div(visible_index, grid_h * grid_w, rounding_mode="floor")
        j = torch.div(visible_index, grid_w, rounding_mode="floor") % grid_h
        return self.project(blocks[rows, i, j, visible_index % grid_w].reshape(b, -1, width))


class VideoViT(nn.Module):
    """Video ViT encoder: tubelet embedding, position table, timm blocks, final norm, mean pooling.

    `forward(x, visible_index)` returns `(tokens, pooled)`: the visible tokens after `norm` and
    their mean after `fc_norm` (see the module docstring for which of the two is a LayerNorm).
    `sincos_grid`: the grid a fixed sinusoid table was built for when it differs from this model's
    (a checkpoint trained at another size); the table is then resampled, never regenerated.
    """

    def __init__(self, in_chans: int = 3, num_frames: int = 16, img_size: int | tuple[int, int] = 224,
                 tubelet_size: int = 2, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, pos_embed: str = "sincos",
                 init_values: float = 0.0, drop_path_rate: float = 0.0,
                 use_mean_pooling: bool = False, grad_checkpointing: bool = False,
                 sincos_grid: Grid | None = None):
        super().__init__()
        height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self._check_divisible(num_frames, tubelet_size, "num_frames", "tubelet_size")
        self._check_divisible(height, patch_size, "img_size height", "patch_size")
        self._check_divisible(width, patch_size, "img_size width", "patch_size")
        if not 1 <= num_heads <= embed_dim:
            raise ValueError(f"video_vit: num_heads={num_heads} must be within 1..embed_dim={embed_dim}")
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"video_vit.pos_embed={pos_embed!r}: choose 'sincos' or 'learned'")
        self.arch: dict[str, Any] = dict(
            in_chans=in_chans, num_frames=num_frames, img_size=(height, width),
            tubelet_size=tubelet_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, pos_embed=pos_embed, init_values=init_values,
            use_mean_pooling=use_mean_pooling, sincos_grid=None)
        self.in_chans, self.embed_dim = in_chans, embed_dim
        self.grid_size: Grid = (num_frames // tubelet_size, height // patch_size, width // patch_size)
        self.num_patches = math.prod(self.grid_size)
        self.grad_checkpointing = grad_checkpointing

        self.patch_embed = TubeletEmbed(in_chans, embed_dim, tubelet_size, patch_size)
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_buffer("pos_embed", sinusoid_table(self.num_patches, embed_dim),
                                 persistent=False)
            self.use_sincos_table_of(sincos_grid)
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # also under a meta device
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, init_values=init_values or None,
                  drop_path=rate, norm_layer=LayerNorm, attn_layer=QVBiasAttention)
            for rate in rates])
        self.norm = nn.Identity() if use_mean_pooling else LayerNorm(embed_dim)
        self.fc_norm = LayerNorm(embed_dim) if use_mean_pooling else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _check_divisible(value: int, by: int, name: str, by_name: str) -> None:
        if value % by:
            raise ValueError(f"video_vit: {name}={value} is not divisible by {by_name}={by}")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # VideoMAE's init: truncated normal Linear weights, zero biases; LayerNorm at identity.
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def use_sincos_table_of(self, grid: Grid | None) -> None:
        """Use the fixed sinusoid table of `grid`, resampled to this model's grid (None: own grid)."""
        if self.arch["pos_embed"] != "sincos":
            raise ValueError("use_sincos_table_of needs pos_embed='sincos'; a learned table is "
                             "resampled by load_pretrained instead")
        grid = tuple(int(g) for g in grid) if grid is not None else self.grid_size
        table = resample_pos_embed(sinusoid_table(math.prod(grid), self.embed_dim), grid,
                                   self.grid_size)
        with torch.no_grad():
            self.pos_embed.copy_(table)
        self.arch["sincos_grid"] = None if grid == self.grid_size else grid

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def forward(self, x: torch.Tensor, visible_index: torch.Tensor | None = None,
                visible_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, H, W) -> (tokens (B, n, D), pooled (B, D)) over the tokens `visible_index`
        (B, n) names (`mmdistill.data.masking.token_indices` of a tube mask), or all N tokens.
        `visible_valid` (B, n) bool marks padding (False) in ragged rows (a bernoulli mask,
        `batch_token_indices`): no token attends to it and the mean leaves it out, so each
        clip gets what it would alone; the padded rows of `tokens` are meaningless."""
        self._check_input(x)
        if visible_index is not None:
            self._check_index(visible_index, x.shape[0])
        attn_mask = None
        if visible_valid is not None:
            if visible_index is None or visible_valid.shape != visible_index.shape \
                    or visible_valid.dtype != torch.bool:
                raise ValueError(f"visible_valid must be a bool tensor shaped like visible_index "
                                 f"(mmdistill.data.masking.batch_token_indices), got "
                                 f"{visible_valid.dtype} {tuple(visible_valid.shape)}")
            attn_mask = visible_valid[:, None, None, :]  # (B, heads, queries, keys)
        x = self.patch_embed(x, visible_index)  # only the visible tubelets are embedded
        pos_embed = self.pos_embed.to(dtype=x.dtype)
        if visible_index is not None:  # the position table gathered the same way
            pos_embed = pos_embed[0][visible_index]
        x = x + pos_embed
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask=attn_mask)
        tokens = self.norm(x)
        if visible_valid is None:
            return tokens, self.fc_norm(tokens.mean(dim=1))
        weight = visible_valid.unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * weight).sum(dim=1) / weight.sum(dim=1)
        return tokens, self.fc_norm(mean)

    def _check_input(self, x: torch.Tensor) -> None:
        t, h, w = self.grid_size
        expected = (self.in_chans, t * self.arch["tubelet_size"], h * self.arch["patch_size"],
                    w * self.arch["patch_size"])
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"VideoViT expects input (B, C, T, H, W) = (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}; check the modality's channels, clip length "
                             f"and crop size against video_vit.in_chans/num_frames/img_size (skeleton "
                             f"heatmaps are the crop / skeleton_heatmaps.stride)")

    def _check_index(self, index: torch.Tensor, batch_size: int) -> None:
        """Shapes only: checking the values would make the host wait for the device."""
        if (index.dtype != torch.long or index.dim() != 2 or index.shape[0] != batch_size
                or index.shape[1] > self.num_patches):
            raise ValueError(f"visible_index must be a long (B, n) tensor with B = {batch_size}, "
                             f"n <= N = {self.num_patches} (mmdistill.data.masking.token_indices "
                             f"of a bool tube mask); got {index.dtype} {tuple(index.shape)}")


@gin.configurable("video_vit", denylist=["in_chans"])
def video_vit(size: str = "tiny", in_chans: int = 3, num_frames: int = 16,
              img_size: int | tuple[int, int] = 224, tubelet_size: int = 2, patch_size: int = 16,
              embed_dim: int | None = None, depth: int | None = None, num_heads: int | None = None,
              mlp_ratio: float = 4.0, pos_embed: str = "sincos", init_values: float = 0.0,
              drop_path_rate: float = 0.0, use_mean_pooling: bool = False,
              grad_checkpointing: bool = False, sincos_grid: Grid | None = None) -> VideoViT:
    """A VideoViT of a named size; embed_dim/depth/num_heads override the size's values."""
    if size not in SIZES:
        raise ValueError(f"video_vit.size={size!r}: choose one of {sorted(SIZES)} "
                         f"(or set embed_dim/depth/num_heads)")
    dim, layers, heads = SIZES[size]
    return VideoViT(in_chans=in_chans, num_frames=num_frames, img_size=img_size,
                    tubelet_size=tubelet_size, patch_size=patch_size,
                    embed_dim=embed_dim or dim, depth=depth or layers, num_heads=num_heads or heads,
                    mlp_ratio=mlp_ratio, pos_embed=pos_embed, init_values=init_values,
                    drop_path_rate=drop_path_rate, use_mean_pooling=use_mean_pooling,
                    grad_checkpointing=grad_checkpointing, sincos_grid=sincos_grid)
