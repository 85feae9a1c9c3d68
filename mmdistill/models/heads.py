"""Cross-modal translation (CMT) heads: map student features into each teacher's feature space."""
from __future__ import annotations

import gin
from timm.layers import Mlp
from torch import nn


@gin.configurable("cmt_head")
def cmt_head(in_dim: int, out_dim: int, hidden_dim: int | None = None, depth: int = 1,
             act: str = "relu") -> nn.Module:
    """Linear-act-Linear like the original (`depth=1`, a timm Mlp); `depth` = hidden layers.

    hidden_dim None = in_dim (the original's D -> D -> D). Output width is the teacher's width, so
    teachers of different sizes work.
    """
    if depth < 1:
        raise ValueError(f"cmt_head.depth={depth}: needs at least one hidden layer")
    act_layer = {"relu": nn.ReLU, "gelu": nn.GELU}[act]
    hidden_dim = hidden_dim or in_dim
    if depth == 1:
        return Mlp(in_dim, hidden_dim, out_dim, act_layer=act_layer)
    # timm's Mlp has exactly one hidden layer; deeper heads chain Linear-act pairs by hand.
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden_dim), act_layer()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class StudentWithHeads(nn.Module):
    """The trainable part of distillation: student encoder + one CMT head per teacher.

    Its forward is what DDP wraps, so gradient sync sees every trainable parameter's use.
    State-dict prefixes: `student.`, `heads.<modality>.`.
    """

    def __init__(self, student: nn.Module, heads: dict[str, nn.Module], feature: str = "tokens"):
        super().__init__()
        if feature not in ("tokens", "pooled"):
            raise ValueError(f"distill.feature={feature!r}: choose 'tokens' or 'pooled'")
        self.student = student
        self.heads = nn.ModuleDict(heads)
        self.feature = feature

    def forward(self, x, mask=None):
        tokens, pooled = self.student(x, mask)
        feats = tokens if self.feature == "tokens" else pooled
        return {name: head(feats) for name, head in self.heads.items()}
