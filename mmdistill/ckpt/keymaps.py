"""Key layouts of VideoMAE encoders: official (= ours, see vit.py) and Hugging Face `transformers`.

All functions work on one encoder's keys with its root prefix already removed, and map tensors
without changing values, so a mapped checkpoint computes exactly what the source did.
"""
from __future__ import annotations

import re

import torch

StateDict = dict[str, torch.Tensor]

# The key that marks where one encoder starts, per layout: its root prefix is what precedes it.
ENCODER_MARKERS = {
    "patch_embed.proj.weight": "official",
    "embeddings.patch_embeddings.projection.weight": "hf",
}
# Keys that belong to a pretraining or classification model but not to the encoder itself.
NON_ENCODER_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "head.", "classifier.",
                        "action_head.")

_OFFICIAL_TO_OURS = [(re.compile(r"^blocks\.(\d+)\.gamma_(1|2)$"), r"blocks.\1.ls\2.gamma")]
_OURS_TO_OFFICIAL = [(re.compile(r"^blocks\.(\d+)\.ls(1|2)\.gamma$"), r"blocks.\1.gamma_\2")]

_HF_LAYER = r"^encoder\.layer\.(\d+)\."
_HF_TO_OURS = [
    (re.compile(r"^embeddings\.patch_embeddings\.projection\."), "patch_embed.proj."),
    (re.compile(_HF_LAYER + r"attention\.attention\.(q_bias|v_bias)$"), r"blocks.\1.attn.\2"),
    (re.compile(_HF_LAYER + r"attention\.attention\.query\.bias$"), r"blocks.\1.attn.q_bias"),
    (re.compile(_HF_LAYER + r"attention\.attention\.value\.bias$"), r"blocks.\1.attn.v_bias"),
    (re.compile(_HF_LAYER + r"attention\.output\.dense\."), r"blocks.\1.attn.proj."),
    (re.compile(_HF_LAYER + r"layernorm_before\."), r"blocks.\1.norm1."),
    (re.compile(_HF_LAYER + r"layernorm_after\."), r"blocks.\1.norm2."),
    (re.compile(_HF_LAYER + r"intermediate\.dense\."), r"blocks.\1.mlp.fc1."),
    (re.compile(_HF_LAYER + r"output\.dense\."), r"blocks.\1.mlp.fc2."),
    (re.compile(r"^layernorm\."), "norm."),
    (re.compile(r"^classifier\."), "head."),
]
_HF_QKV = re.compile(_HF_LAYER + r"attention\.attention\.(query|key|value)\.weight$")
_HF_K_BIAS = re.compile(_HF_LAYER + r"attention\.attention\.key\.bias$")


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        if pattern.search(key):
            return pattern.sub(replacement, key)
    return key


def official_to_ours(state_dict: StateDict) -> StateDict:
    """Official VideoMAE keys -> ours: only layer scale differs (`gamma_1` -> `ls1.gamma`)."""
    return {_rename(k, _OFFICIAL_TO_OURS): v for k, v in state_dict.items()}


def ours_to_official(state_dict: StateDict) -> StateDict:
    return {_rename(k, _OURS_TO_OFFICIAL): v for k, v in state_dict.items()}


def hf_to_ours(state_dict: StateDict) -> StateDict:
    """`transformers` VideoMAE keys -> ours; query/key/value weights are stacked into `qkv`."""
    out: StateDict = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if match := _HF_QKV.search(key):
            qkv.setdefault(match.group(1), {})[match.group(2)] = value
        elif _HF_K_BIAS.search(key):
            if value.abs().max() > 0:
                raise ValueError(f"{key} is non-zero; VideoMAE attention has no key bias, so this "
                                 f"checkpoint is not a VideoMAE model")
        else:
            out[_rename(key, _HF_TO_OURS)] = value
    for layer, parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(f"layer {layer} has only {sorted(parts)} of query/key/value weights; "
                             f"the checkpoint is incomplete")
        out[f"blocks.{layer}.attn.qkv.weight"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0)
    return out


_OURS_TO_HF = [
    (re.compile(r"^patch_embed\.proj\."), "embeddings.patch_embeddings.projection."),
    (re.compile(r"^blocks\.(\d+)\.attn\.(q_bias|v_bias)$"), r"encoder.layer.\1.attention.attention.\2"),
    (re.compile(r"^blocks\.(\d+)\.attn\.proj\."), r"encoder.layer.\1.attention.output.dense."),
    (re.compile(r"^blocks\.(\d+)\.norm1\."), r"encoder.layer.\1.layernorm_before."),
    (re.compile(r"^blocks\.(\d+)\.norm2\."), r"encoder.layer.\1.layernorm_after."),
    (re.compile(r"^blocks\.(\d+)\.mlp\.fc1\."), r"encoder.layer.\1.intermediate.dense."),
    (re.compile(r"^blocks\.(\d+)\.mlp\.fc2\."), r"encoder.layer.\1.output.dense."),
    (re.compile(r"^norm\."), "layernorm."),
]
_OURS_QKV = re.compile(r"^blocks\.(\d+)\.attn\.qkv\.weight$")


def ours_to_hf(state_dict: StateDict) -> StateDict:
    """Ours -> `transformers.VideoMAEModel` keys (no root prefix); `qkv` split into three."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if match := _OURS_QKV.search(key):
            query, key_w, val = value.chunk(3, dim=0)
            base = f"encoder.layer.{match.group(1)}.attention.attention."
            out.update({base + "query.weight": query, base + "key.weight": key_w,
                        base + "value.weight": val})
            continue
        renamed = _rename(key, _OURS_TO_HF)
        if renamed == key:
            raise ValueError(f"{key} has no place in the Hugging Face VideoMAE layout")
        out[renamed] = value
    return out
