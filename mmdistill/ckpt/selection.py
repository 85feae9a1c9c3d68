"""Which video ViT encoders a `Checkpoint` holds, one of them selected in our key layout, and its
architecture inferred from the weights (plus what the file records) and compared with a model.

`ckpt inspect` needs only this and the reader; `mmdistill.ckpt.loading` builds on it.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from mmdistill.ckpt import keymaps
from mmdistill.ckpt.reading import Checkpoint, CheckpointError, StateDict
from mmdistill.models.pos_embed import Grid
from mmdistill.models.vit import SIZES, VideoViT, attention_width


@dataclass
class ModelView:
    """One encoder selected from a checkpoint, keys in our layout (see vit.py)."""

    root: str  # its prefix in the checkpoint's state dict ('' for a bare encoder)
    layout: str  # official | hf
    state_dict: StateDict
    dropped: list[str]  # decoder / pretraining / classifier keys that are not the encoder's
    arch: dict[str, Any]  # inferred; see infer_arch
    source_grid: Grid | None  # the (T', H', W') grid it was trained on, when known
    ignored: int = 0  # tensors of other models in the same checkpoint


def find_models(state_dict: StateDict) -> dict[str, str]:
    """Root prefix -> layout ('official' | 'hf') of every video ViT encoder in a state dict."""
    roots = {}
    for key in state_dict:
        for marker, layout in keymaps.ENCODER_MARKERS.items():
            if key == marker or key.endswith("." + marker):
                roots[key[: len(key) - len(marker)]] = layout
    return dict(sorted(roots.items()))


def _family(root: str) -> str:
    """The prefix of the whole model an encoder belongs to (pretraining: its parent)."""
    for inner in ("encoder.", "videomae."):
        if root == inner or root.endswith("." + inner):
            return root[: len(root) - len(inner)]
    return root


def model_groups(ckpt: Checkpoint) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(models: root -> layout, other top-level groups: prefix -> keys) for listing a checkpoint."""
    models = find_models(ckpt.state_dict)
    families = sorted({_family(r) for r in models}, key=len, reverse=True)
    others: dict[str, list[str]] = {}
    for key in ckpt.state_dict:
        if any(key.startswith(f) for f in families):
            continue
        group = key.split(".", 1)[0] + ("." if "." in key else "")
        others.setdefault(group, []).append(key)
    return models, others


def select_model(ckpt: Checkpoint, prefix: str | None = None,
                 source_grid: Grid | None = None) -> ModelView:
    """Pick one encoder out of `ckpt` (by `prefix` when there are several) in our key layout."""
    models = find_models(ckpt.state_dict)
    root = _choose_root(ckpt, models, prefix)
    layout, family = models[root], _family(root)
    own, dropped = {}, []
    for key, value in ckpt.state_dict.items():
        if key.startswith(root):
            rest = key[len(root):]
        elif key.startswith(family) and family != root:
            rest = key[len(family):]
            if not (layout == "hf" and rest.startswith("fc_norm.")):  # HF keeps fc_norm outside
                if rest.startswith(keymaps.NON_ENCODER_PREFIXES):
                    dropped.append(key)
                continue
        else:
            continue
        if rest.startswith(keymaps.NON_ENCODER_PREFIXES):
            dropped.append(key)
        else:
            own[rest] = value
    ignored = len(ckpt.state_dict) - len(dropped) - len(own)
    try:
        own = keymaps.hf_to_ours(own) if layout == "hf" else keymaps.official_to_ours(own)
    except ValueError as err:
        raise CheckpointError(f"{ckpt.path} (prefix {root!r}): {err}") from None
    arch = infer_arch(own, ckpt, root)
    grid = tuple(source_grid) if source_grid is not None else _recorded_grid(arch)
    return ModelView(root, layout, own, dropped, arch, grid, ignored)


def _choose_root(ckpt: Checkpoint, models: dict[str, str], prefix: str | None) -> str:
    listing = ", ".join(repr(r) for r in models) or "none"
    if prefix:
        prefix = prefix if prefix.endswith(".") else prefix + "."
        for wrapper in ckpt.metadata.get("stripped_prefixes", []):  # accept the prefix as saved
            if wrapper == "._orig_mod.":
                prefix = prefix.replace(wrapper, ".")
            else:
                prefix = prefix.removeprefix(wrapper)
        matches = [r for r in models if r.startswith(prefix)]
        if prefix in matches or len(matches) == 1:
            return prefix if prefix in matches else matches[0]
        if not matches:
            has_keys = any(k.startswith(prefix) for k in ckpt.state_dict)
            close = difflib.get_close_matches(prefix, [_family(r) or r for r in models], n=1)
            why = ("holds no video ViT (no patch_embed weights under it)" if has_keys
                   else "matches no key")
            raise CheckpointError(
                f"prefix {prefix!r} {why} in {ckpt.path}. Models inside: {listing}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + ". Run `python -m mmdistill.ckpt inspect PATH` to see everything inside.")
        raise CheckpointError(f"prefix {prefix!r} matches several models in {ckpt.path}: "
                              f"{', '.join(map(repr, matches))}; give the full prefix of one")
    if len(models) == 1:
        return next(iter(models))
    if not models:
        groups = sorted({k.split(".", 1)[0] for k in ckpt.state_dict})
        raise CheckpointError(f"{ckpt.path} holds no video ViT encoder (no key ending in "
                              f"patch_embed.proj.weight); its top-level groups are {groups[:15]}")
    raise CheckpointError(f"{ckpt.path} holds several models: {listing}. Choose one with "
                          f"prefix=... (gin: pretrained.prefix = 'student_rgb.'; CLI: --prefix)")


# --- architecture ----------------------------------------------------------------------------------

def infer_arch(state_dict: StateDict, ckpt: Checkpoint | None = None, root: str = "") -> dict[str, Any]:
    """Architecture of an encoder (our key layout) from its weights, plus what metadata records.

    Keys are VideoViT arguments. `num_heads_known` says whether the head count came from recorded
    configuration (weights cannot tell it). `use_mean_pooling` is None when the source has neither
    a final `norm` nor `fc_norm` (a Hugging Face VideoMAEModel with mean pooling).
    """
    if "patch_embed.proj.weight" not in state_dict:
        raise CheckpointError("no patch_embed.proj.weight in the selected weights")
    dim, in_chans, tubelet, patch_h, patch_w = state_dict["patch_embed.proj.weight"].shape
    if patch_h != patch_w:
        raise CheckpointError(f"non-square patches ({patch_h}x{patch_w}) are not supported")
    blocks = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))})
    if blocks != list(range(len(blocks))):
        raise CheckpointError(f"block indices are not contiguous: {blocks}; the checkpoint is incomplete")
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    has_norm, has_fc_norm = "norm.weight" in state_dict, "fc_norm.weight" in state_dict
    arch: dict[str, Any] = dict(
        in_chans=in_chans, embed_dim=dim, depth=len(blocks), tubelet_size=tubelet,
        patch_size=patch_h, mlp_ratio=(fc1.shape[0] / dim) if fc1 is not None else None,
        pos_embed="learned" if "pos_embed" in state_dict else "sincos",
        layer_scale="blocks.0.ls1.gamma" in state_dict,
        use_mean_pooling=True if has_fc_norm else (False if has_norm else None))
    if "pos_embed" in state_dict:
        arch["num_tokens"] = state_dict["pos_embed"].shape[-2]
    arch["attn_dim"] = attention_inner_width(state_dict, "blocks.0.attn.")
    recorded = _recorded_arch(ckpt, root, dim) if ckpt is not None else {}
    arch.update({k: v for k, v in recorded.items() if k not in arch or arch[k] is None})
    arch["num_heads_known"] = "num_heads" in recorded
    if "num_heads" not in arch:
        arch["num_heads"] = assumed_heads(dim, arch["attn_dim"])
    return arch


def attention_inner_width(state_dict: StateDict, prefix: str) -> int | None:
    """The attention's inner width (heads x head_dim) from q_bias, else qkv (3 x inner rows);
    None without attention weights. It differs from the embed width when the heads do not
    divide it: the tennis fork's 1024-wide, 12-head encoder (models/modeling_pretrain.py:598-600)
    has 12 x (1024 // 12) = 1020 (models/modeling_finetune.py:80-95)."""
    q_bias, qkv = state_dict.get(prefix + "q_bias"), state_dict.get(prefix + "qkv.weight")
    width = q_bias.shape[0] if q_bias is not None else None
    if qkv is not None:
        if qkv.shape[0] % 3 or (width is not None and qkv.shape[0] != 3 * width):
            raise CheckpointError(f"{prefix}qkv.weight has {qkv.shape[0]} rows and q_bias "
                                  f"{width}: not the q/k/v stack of one attention; the "
                                  f"checkpoint is not a VideoMAE model")
        width = qkv.shape[0] // 3
    return width


def heads_for_width(embed_dim: int, attn_dim: int) -> list[int]:
    """Every head count that gives `attn_dim` under VideoMAE's head_dim = embed_dim // heads:
    weights cannot tell them apart (1020 of 1024: 6, 10, 12, 15, 20, 30, 60)."""
    return [h for h in range(1, embed_dim + 1) if attention_width(embed_dim, h) == attn_dim]


def assumed_heads(embed_dim: int, attn_dim: int | None) -> int | None:
    """The head count assumed when nothing records it: VideoMAE's size table (64-wide heads)
    for an attention as wide as the embedding; None (unknown) for a narrower one."""
    if attn_dim is not None and attn_dim != embed_dim:
        return None
    return SIZES_BY_DIM.get(embed_dim, embed_dim // 64 if embed_dim % 64 == 0 else None)


def heads_hint(embed_dim: int, attn_dim: int) -> str:
    """What to set when the head count is not recorded: the counts that fit the weights."""
    options = heads_for_width(embed_dim, attn_dim)
    shown = ", ".join(map(str, options[:10])) + (", ..." if len(options) > 10 else "")
    return (f"an attention {attn_dim} wide in a {embed_dim}-wide model comes from num_heads in "
            f"{{{shown}}} (VideoMAE's head_dim = embed_dim // num_heads); the weights cannot tell "
            f"which, so set it (the tennis fork's VideoMAE_ViT_B_1600, models/modeling_pretrain.py:"
            f"592-604: encoder 1024 wide with 12 heads, decoder 512 wide with 6)")


def decoder_arch(state_dict: StateDict, prefix: str = "decoder.") -> dict[str, Any] | None:
    """Width, depth, attention width and head output of a VideoMAE pretraining decoder under
    `prefix` (official layout), None when there is none; heads as `infer_arch` tells them."""
    norm = state_dict.get(prefix + "norm.weight")
    if norm is None:
        return None
    dim = norm.shape[0]
    blocks = {int(m.group(1)) for k in state_dict
              if (m := re.match(re.escape(prefix) + r"blocks\.(\d+)\.", k))}
    head = state_dict.get(prefix + "head.weight")
    fc1 = state_dict.get(prefix + "blocks.0.mlp.fc1.weight")
    attn_dim = attention_inner_width(state_dict, prefix + "blocks.0.attn.")
    return dict(embed_dim=dim, depth=len(blocks), attn_dim=attn_dim,
                num_heads=assumed_heads(dim, attn_dim) if attn_dim == dim else None,
                mlp_ratio=fc1.shape[0] / dim if fc1 is not None else None,
                out_dim=head.shape[0] if head is not None else None)


SIZES_BY_DIM = {dim: heads for dim, _, heads in SIZES.values()}


def _recorded_arch(ckpt: Checkpoint, root: str, embed_dim: int) -> dict[str, Any]:
    """num_heads / num_frames / img_size (and pooling) as the checkpoint's metadata records them."""
    meta = ckpt.metadata
    arch_table = meta.get("arch") or {}
    for key in (root, root.rstrip("."), _family(root), _family(root).rstrip(".")):
        if key in arch_table:
            ours = dict(arch_table[key])
            return {k: ours[k] for k in ("num_heads", "num_frames", "img_size", "sincos_grid")
                    if k in ours}
    if "hf_config" in meta:
        config = meta["hf_config"]
        size = config.get("image_size", 224)
        return {"num_heads": config.get("num_attention_heads", 12),
                "num_frames": config.get("num_frames", 16),
                "img_size": tuple(size) if isinstance(size, (list, tuple)) else (size, size)}
    if "args" in meta:
        args, out = meta["args"], {}
        if "num_frames" in args:
            out["num_frames"] = int(args["num_frames"])
        size = args.get("input_size")
        if size is not None:
            out["img_size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        name = str(args.get("model", ""))
        for size_name, (dim, _, heads) in SIZES.items():
            if f"_{size_name}_" in name and dim == embed_dim:  # e.g. pretrain_videomae_base_patch16_224
                out["num_heads"] = heads
        if "num_heads" in args:  # written by `mmdistill.ckpt export --to official`
            out["num_heads"] = int(args["num_heads"])
        return out
    return {}


def _grid_of(arch: dict[str, Any]) -> Grid | None:
    if "num_frames" not in arch or "img_size" not in arch:
        return None
    (h, w), p = arch["img_size"], arch["patch_size"]
    return (arch["num_frames"] // arch["tubelet_size"], h // p, w // p)


def _recorded_grid(arch: dict[str, Any]) -> Grid | None:
    """The grid the checkpoint's position table belongs to, as its metadata records it."""
    if arch.get("sincos_grid"):
        return tuple(arch["sincos_grid"])
    return _grid_of(arch)


def arch_mismatches(arch: dict[str, Any], model: VideoViT) -> list[str]:
    """Human-readable differences between inferred checkpoint architecture and a built model."""
    ours = model.arch
    problems = []
    for name in ("in_chans", "embed_dim", "depth", "tubelet_size", "patch_size", "pos_embed"):
        if arch[name] != ours[name]:
            problems.append(f"checkpoint has {name}={arch[name]!r}, config asks for {ours[name]!r}")
    if arch["mlp_ratio"] is not None and not math.isclose(arch["mlp_ratio"], ours["mlp_ratio"]):
        problems.append(f"checkpoint has mlp_ratio={arch['mlp_ratio']:g}, config asks for "
                        f"{ours['mlp_ratio']:g}")
    if arch["layer_scale"] != bool(ours["init_values"]):
        problems.append(f"checkpoint {'has' if arch['layer_scale'] else 'has no'} layer scale, config "
                        f"asks for init_values={ours['init_values']!r} (0 = none)")
    pooling = arch["use_mean_pooling"]
    if (pooling is None and not ours["use_mean_pooling"]) or (
            pooling is not None and pooling != ours["use_mean_pooling"]):
        why = {True: "fc_norm after the mean", False: "a final `norm` after the blocks, as "
               "pretraining encoders have", None: "no final norm at all, a mean-pooling "
               "VideoMAEModel"}[pooling]
        problems.append(f"checkpoint has use_mean_pooling={pooling is not False} ({why}), config "
                        f"asks for {ours['use_mean_pooling']}")
    if arch["num_heads_known"] and arch["num_heads"] != ours["num_heads"]:
        problems.append(f"checkpoint has num_heads={arch['num_heads']}, config asks for "
                        f"{ours['num_heads']}")
    width = attention_width(ours["embed_dim"], ours["num_heads"])
    if (arch.get("attn_dim") is not None and arch["embed_dim"] == ours["embed_dim"]
            and arch["attn_dim"] != width):
        problems.append(f"checkpoint's attention is {arch['attn_dim']} wide (q_bias/qkv), the "
                        f"config's num_heads={ours['num_heads']} gives {ours['num_heads']} x "
                        f"{ours['embed_dim'] // ours['num_heads']} = {width}: "
                        + heads_hint(arch["embed_dim"], arch["attn_dim"]))
    return problems
