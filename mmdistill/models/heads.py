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
    if act not in ("relu", "gelu"):
        raise ValueError(f"cmt_head.act={act!r}: choose 'relu' or 'gelu'")
    act_layer = {"relu": nn.ReLU, "gelu": nn.GELU}[act]
    hidden_dim = hidden_dim or in_dim
    config = dict(in_dim=in_dim, out_dim=out_dim, hidden_dim=hidden_dim, depth=depth, act=act)
    if depth == 1:
        head = Mlp(in_dim, hidden_dim, out_dim, act_layer=act_layer)
        head.config = config  # saved in checkpoints so evaluation can rebuild the head
        return head
    # timm's Mlp has exactly one hidden layer; deeper heads chain Linear-act pairs by hand.
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden_dim), act_layer()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    head = nn.Sequential(*layers)
    head.config = config
    return head


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

    def forward(self, x, visible_index=None):
        tokens, pooled = self.student(x, visible_index)
        feats = tokens if self.feature == "tokens" else pooled
        return {name: head(feats) for name, head in self.heads.items()}


class PooledHead(nn.Module):
    """A head trained on the pooled feature, called like a token-wise head.

    Evaluation averages a head's output over tokens; this one returns head(fc_norm(mean of the
    tokens)) as a single token, so that average is exactly the head applied to the pooled feature.
    """

    def __init__(self, head: nn.Module, fc_norm: nn.Module):
        super().__init__()
        self.head, self.fc_norm = head, fc_norm

    def forward(self, tokens):
        return self.head(self.fc_norm(tokens.mean(dim=1))).unsqueeze(1)
