"""Cross-modal translation (CMT) heads: map student features into each teacher's feature space."""
from __future__ import annotations

from collections import OrderedDict

import gin
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class CMTHead(nn.Sequential):
    """Linear-act-Linear like MM-CDFSL's models/cmt.py (`depth=1`); `depth` = hidden layers.

    It keeps its own `config`, which distillation checkpoints record (`arch`, `heads.<modality>`)
    so evaluation rebuilds the head with `CMTHead(**config)`. State-dict keys: `fc1.*`, `fc2.*`
    at depth 1 (the names of timm's Mlp, which earlier checkpoints hold), `0.*, 2.*, ...` deeper.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, depth: int = 1,
                 act: str = "relu"):
        if depth < 1:
            raise ValueError(f"cmt_head.depth={depth}: needs at least one hidden layer")
        if act not in ACTIVATIONS:
            raise ValueError(f"cmt_head.act={act!r}: choose one of {sorted(ACTIVATIONS)}")
        hidden_dim = hidden_dim or in_dim
        if depth == 1:
            layers = OrderedDict(fc1=nn.Linear(in_dim, hidden_dim), act=ACTIVATIONS[act](),
                                 fc2=nn.Linear(hidden_dim, out_dim))
            super().__init__(layers)
        else:
            widths = [in_dim] + [hidden_dim] * depth
            hidden = [layer for a, b in zip(widths, widths[1:])
                      for layer in (nn.Linear(a, b), ACTIVATIONS[act]())]
            super().__init__(*hidden, nn.Linear(hidden_dim, out_dim))
        self.config = dict(in_dim=in_dim, out_dim=out_dim, hidden_dim=hidden_dim, depth=depth, act=act)


@gin.configurable("cmt_head", denylist=["in_dim", "out_dim"])
def cmt_head(in_dim: int, out_dim: int, hidden_dim: int | None = None, depth: int = 1,
             act: str = "relu") -> CMTHead:
    """gin entry for the CMT heads distillation builds, one per teacher.

    hidden_dim None = in_dim (MM-CDFSL's D -> D -> D). Output width is the teacher's width, so
    teachers of different sizes work.
    """
    return CMTHead(in_dim, out_dim, hidden_dim, depth, act)


# MM-CDFSL's classifier builds its fc_norm as torch's default LayerNorm (eps 1e-5), as
# F.layer_norm normalises the teacher targets with target_norm.
FC_NORM_EPS = 1e-5


class StudentWithHeads(nn.Module):
    """The trainable part of distillation: student encoder + one CMT head per teacher.

    Its forward is what DDP wraps, so gradient sync sees every trainable parameter's use.
    State-dict prefixes: `student.`, `heads.<modality>.`, and `fc_norm.` with `fc_norm=True`: a
    trainable LayerNorm on the pooled feature, like the fresh fc_norm MM-CDFSL's distillation
    student trains on top of its encoder (only with feature='pooled').
    """

    def __init__(self, student: nn.Module, heads: dict[str, nn.Module], feature: str = "tokens",
                 fc_norm: bool = False):
        super().__init__()
        if feature not in ("tokens", "pooled"):
            raise ValueError(f"distill.feature={feature!r}: choose 'tokens' or 'pooled'")
        if fc_norm and feature != "pooled":
            raise ValueError("distill.student_fc_norm=True normalises the pooled feature: set "
                             "distill.feature='pooled' as well, or student_fc_norm=False")
        self.student = student
        self.heads = nn.ModuleDict(heads)
        self.feature = feature
        self.fc_norm = nn.LayerNorm(student.embed_dim, eps=FC_NORM_EPS) if fc_norm else None

    def forward(self, x, visible_index=None, visible_valid=None):
        tokens, pooled = self.student(x, visible_index, visible_valid)
        if self.fc_norm is not None:
            pooled = self.fc_norm(pooled)
        feats = tokens if self.feature == "tokens" else pooled
        return {name: head(feats) for name, head in self.heads.items()}

    def feature_model(self) -> nn.Module:
        """The student as validation and evaluation must see it: (tokens, the pooled feature it
        was distilled with). Shares the live modules, so it follows training."""
        return self.student if self.fc_norm is None else NormedPooling(self.student, self.fc_norm)


class NormedPooling(nn.Module):
    """A VideoViT whose pooled feature passes one more LayerNorm: (tokens, fc_norm(pooled)).

    It answers `grid_size`, `num_patches`, `in_chans`, `embed_dim` and `arch` like the encoder,
    so few-shot evaluation takes it in place of one.
    """

    def __init__(self, encoder: nn.Module, fc_norm: nn.Module):
        super().__init__()
        self.encoder, self.fc_norm = encoder, fc_norm

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("grid_size", "num_patches", "in_chans", "embed_dim", "arch"):
                return getattr(self.encoder, name)
            raise

    def forward(self, x, visible_index=None, visible_valid=None):
        tokens, pooled = self.encoder(x, visible_index, visible_valid)
        return tokens, self.fc_norm(pooled)


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


@gin.configurable("action_head", denylist=["in_dim", "num_classes"])
class ActionHead(nn.Module):
    """Stage-1 classifier on the source clips: fc_norm(mean of the visible encoder tokens) ->
    dropout -> linear, the head MM-CDFSL trains beside its decoder (models/modeling_pretrain.py).

    It pools the tokens the encoder saw (the masked input's visible ones), so it adds no second
    forward. State-dict keys: `fc_norm.*`, `head.*` (under `action_head.` in a checkpoint).
    """

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"the action head needs at least 2 source classes, got {num_classes}: "
                             f"check source/clip_data.annotations")
        self.fc_norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(in_dim, num_classes)
        self.config = dict(in_dim=in_dim, num_classes=num_classes, dropout=dropout)

    def forward(self, tokens):
        """(B, n, D) visible tokens -> (B, num_classes) logits."""
        return self.head(self.dropout(self.fc_norm(tokens.mean(dim=1))))
