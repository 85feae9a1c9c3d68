"""Checkpoint command line: see what is inside a checkpoint, or export one model for use elsewhere.

  python -m mmdistill.ckpt inspect PATH [--trust-checkpoint]
  python -m mmdistill.ckpt export PATH --to hf|official OUT [--prefix student.] [--num-heads N]
                                  [--overwrite]

`export --to hf` writes a directory `transformers.VideoMAEModel.from_pretrained` loads;
`--to official` writes a `.pth` in the official VideoMAE layout (`{'model': state_dict, 'args'}`).
An existing export (a file, or a directory that is not empty) is replaced only with --overwrite.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from mmdistill.checks import FlagError, check_flags
from mmdistill.ckpt import keymaps
from mmdistill.ckpt.reading import (TRAINING_KEYS, Checkpoint, CheckpointError,
                                         read_checkpoint)
from mmdistill.ckpt.loading import build_from_checkpoint
from mmdistill.ckpt.selection import decoder_arch, heads_hint, model_groups, select_model
from mmdistill.models.vit import VideoViT, attention_width

def describe(ckpt: Checkpoint) -> str:
    """The `inspect` text: container, training metadata, each model's architecture, other groups."""
    lines = [f"path: {ckpt.path}", f"format: {ckpt.format}"
             + (f" (weights from {ckpt.file})" if ckpt.file != ckpt.path else "")]
    meta = ckpt.metadata
    if meta.get("stripped_prefixes"):
        lines.append(f"wrapper prefixes stripped: {', '.join(meta['stripped_prefixes'])}")
    training = {k: meta[k] for k in TRAINING_KEYS if k in meta}
    training.update({f"{k} (from name)": v for k, v in meta.get("name_fields", {}).items()})
    if training:
        lines.append("training: " + ", ".join(f"{k}={v}" for k, v in training.items()))
    if "args" in meta:
        args = meta["args"]
        shown = {k: args[k] for k in ("model", "num_frames", "input_size", "tubelet_size",
                                      "mask_ratio", "epochs", "lr") if k in args}
        lines.append("args: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    models, others = model_groups(ckpt)
    lines.append(f"models ({len(models)}):")
    for root in models:
        view = select_model(ckpt, root or None)
        lines.append(f"  {root!r}: " + _describe_arch(view.arch, view.layout))
        dtypes = Counter(str(t.dtype).replace("torch.", "") for t in view.state_dict.values())
        params = sum(t.numel() for t in view.state_dict.values())
        lines.append(f"      {params / 1e6:.2f}M parameters, dtype "
                     + ", ".join(f"{d} ({n})" for d, n in dtypes.items()))
        if view.dropped:
            lines.append(f"      plus {len(view.dropped)} decoder/pretraining/classifier tensors "
                         f"(not loaded into an encoder)")
        decoder = _describe_decoder(ckpt, root)
        if decoder:
            lines.append("      " + decoder)
    for group, keys in others.items():
        params = sum(ckpt.state_dict[k].numel() for k in keys)
        dtypes = sorted({str(ckpt.state_dict[k].dtype).replace("torch.", "") for k in keys})
        lines.append(f"other group {group!r}: {len(keys)} tensors, {params / 1e6:.2f}M parameters, "
                     f"{', '.join(dtypes)}")
    if len(models) > 1:
        example = next(iter(models))
        lines.append(f"choose a model with prefix (gin: pretrained.prefix = {example!r}; "
                     f"CLI: --prefix {example})")
    return "\n".join(lines)


def _describe_arch(arch: dict[str, Any], layout: str) -> str:
    if arch["num_heads"] is None:
        heads = "? (" + heads_hint(arch["embed_dim"], arch["attn_dim"]) + ")"
    else:
        heads = f"{arch['num_heads']}" + ("" if arch["num_heads_known"] else " (assumed; not recorded)")
    if arch.get("attn_dim") not in (None, arch["embed_dim"]):
        heads += f" attention_width={arch['attn_dim']}"
    pooling = {True: "mean + fc_norm", False: "norm + mean",
               None: "mean, no norm (HF VideoMAEModel)"}[arch["use_mean_pooling"]]
    size = ""
    if "num_frames" in arch:
        size = f" input={arch['num_frames']}x{arch['img_size'][0]}x{arch['img_size'][1]}"
    table = arch["pos_embed"] + (f" ({arch['num_tokens']} tokens)" if "num_tokens" in arch else "")
    mlp = f"{arch['mlp_ratio']:g}" if arch["mlp_ratio"] is not None else "?"
    return (f"{layout} layout, in_chans={arch['in_chans']} embed_dim={arch['embed_dim']} "
            f"depth={arch['depth']} num_heads={heads} patch={arch['patch_size']} "
            f"tubelet={arch['tubelet_size']} mlp_ratio={mlp} "
            f"layer_scale={'yes' if arch['layer_scale'] else 'no'} pooling={pooling} "
            f"pos_embed={table}{size}")


def _describe_decoder(ckpt: Checkpoint, root: str) -> str | None:
    """The pretraining decoder beside an encoder at `<family>encoder.` (official layout)."""
    if not root.endswith("encoder."):
        return None
    family = root[: -len("encoder.")]
    arch = decoder_arch({k[len(family):]: v for k, v in ckpt.state_dict.items()
                         if k.startswith(family + "decoder.")})
    if arch is None:
        return None
    heads = (str(arch["num_heads"]) if arch["num_heads"] is not None else
             "? (" + heads_hint(arch["embed_dim"], arch["attn_dim"]) + ")")
    return (f"decoder: embed_dim={arch['embed_dim']} depth={arch['depth']} num_heads={heads} "
            f"attention_width={arch['attn_dim']} out={arch['out_dim']} (mae.decoder_dim / "
            f"decoder_depth / decoder_heads resume it)")


# ----------------------------------------------------------------------------- export

def check_export_target(out: str | Path, to: str, overwrite: bool = False) -> Path:
    """Refuse a target of the wrong kind, and an existing export unless `overwrite`: an export is
    often the only copy of a result someone already shared."""
    out = Path(out)
    if to == "hf" and out.exists() and not out.is_dir():
        raise CheckpointError(f"--to hf writes a directory, but {out} is a file; give a new or "
                              f"empty directory")
    if to == "official" and out.is_dir():
        raise CheckpointError(f"--to official writes one .pth file, but {out} is a directory; "
                              f"give a file name such as {out / 'student.pth'}")
    exists = out.is_file() or (out.is_dir() and any(out.iterdir()))
    if exists and not overwrite:
        what = "the file" if out.is_file() else "the directory (not empty)"
        raise CheckpointError(f"{what} {out} exists already; nothing was written. Pass "
                              f"--overwrite to replace it, or give another path.")
    return out


def write_hf(model: VideoViT, out: str | Path, overwrite: bool = False) -> Path:
    """Write `model` as a Hugging Face VideoMAE directory (config.json + model.safetensors).

    A mean-pooling model is written as VideoMAEForVideoClassification without classifier
    (`num_labels=0`), the one HF class holding `fc_norm`; VideoMAEModel loads it too.
    """
    from safetensors.torch import save_file

    arch, out = model.arch, check_export_target(out, "hf", overwrite)
    if arch["embed_dim"] % arch["num_heads"]:
        raise CheckpointError(f"this model's attention is {attention_width(arch['embed_dim'], arch['num_heads'])} "
                              f"wide in a {arch['embed_dim']}-wide model ({arch['num_heads']} heads), "
                              f"which the Hugging Face VideoMAE classes cannot represent (they need "
                              f"heads dividing the width); export --to official instead")
    if arch["pos_embed"] == "learned" or arch["init_values"] or arch.get("sincos_grid"):
        what = ("a learned pos_embed" if arch["pos_embed"] == "learned" else
                "layer scale" if arch["init_values"] else
                f"a sinusoid table resampled from {arch['sincos_grid']}")
        raise CheckpointError(f"this model has {what}, which the Hugging Face VideoMAE classes cannot "
                              f"represent (they rebuild a fixed 1-D table and have no layer scale); "
                              f"export --to official instead")
    state = model.state_dict()
    fc_norm = {k: state.pop(k) for k in list(state) if k.startswith("fc_norm.")}
    weights = keymaps.ours_to_hf(state)
    classify = arch["use_mean_pooling"]
    if classify:
        weights = {"videomae." + k: v for k, v in weights.items()} | fc_norm
    height, width = arch["img_size"]
    config = {
        "architectures": ["VideoMAEForVideoClassification" if classify else "VideoMAEModel"],
        "model_type": "videomae", "hidden_size": arch["embed_dim"],
        "num_hidden_layers": arch["depth"], "num_attention_heads": arch["num_heads"],
        "intermediate_size": int(arch["embed_dim"] * arch["mlp_ratio"]), "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-6,
        "image_size": height if height == width else [height, width],
        "patch_size": arch["patch_size"], "num_channels": arch["in_chans"],
        "num_frames": arch["num_frames"], "tubelet_size": arch["tubelet_size"], "qv_bias": True,
        "use_mean_pooling": classify,
    }
    if classify:
        config.update(id2label={}, label2id={})
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.detach().float().contiguous().clone() for k, v in weights.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def write_official(model: VideoViT, out: str | Path, overwrite: bool = False) -> Path:
    """Write `model` as an official VideoMAE fine-tune-layout `.pth` (`{'model', 'args'}`).

    A sinusoid table resampled from another grid is written as a learned `pos_embed` (build the
    official model with use_learnable_pos_emb=True), so nobody regenerates it by mistake.
    """
    out, arch = check_export_target(out, "official", overwrite), model.arch
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    if arch.get("sincos_grid"):
        state["pos_embed"] = model.pos_embed.detach().float().clone()
    height, width = arch["img_size"]
    args = argparse.Namespace(
        model=f"vit_custom_patch{arch['patch_size']}", num_frames=arch["num_frames"],
        input_size=height if height == width else (height, width),
        tubelet_size=arch["tubelet_size"], num_heads=arch["num_heads"],
        use_mean_pooling=arch["use_mean_pooling"],
        use_learnable_pos_emb="pos_embed" in state)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": keymaps.ours_to_official(state), "args": args}, out)
    return out


def _check_trained_fc_norm(ckpt: Checkpoint, prefix: str | None, dropped: bool) -> None:
    """A student distilled on pooled features (distill.student_fc_norm) has its feature after a
    trained LayerNorm on the normed mean, stored beside the encoder (`fc_norm.*`). The HF and
    official layouts normalise the mean of un-normed tokens instead, so exporting the encoder alone
    silently changes the feature the student was trained and evaluated with: say so first."""
    arch = ckpt.metadata.get("arch") or {}
    if prefix != "student." or "fc_norm" not in arch or dropped:
        return
    raise CheckpointError(f"{ckpt.path}: this student was distilled through a trained pooled "
                          f"LayerNorm (fc_norm.*, on top of its normed mean), which neither the "
                          f"HF nor the official layout can hold; its exported features would "
                          f"differ from the ones it was evaluated with. Pass --without-fc-norm to "
                          f"export the encoder alone, or evaluate this checkpoint directly "
                          f"(python -m mmdistill.eval).")


# ----------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmdistill.ckpt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="list the models inside a checkpoint")
    inspect.add_argument("path")
    export = sub.add_parser("export", help="write one model as a HF directory or official .pth")
    export.add_argument("path")
    export.add_argument("out")
    export.add_argument("--to", required=True, choices=("hf", "official"))
    export.add_argument("--prefix", default=None, help="which model, e.g. student_rgb.")
    export.add_argument("--num-heads", type=int, default=None,
                        help="head count, when the checkpoint does not record it")
    export.add_argument("--num-frames", type=int, default=None,
                        help="clip length of the exported model (default: as recorded, else 16)")
    export.add_argument("--img-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="input size of the exported model (default: as recorded, else 224 224)")
    export.add_argument("--source-grid", type=int, nargs=3, default=None, metavar=("T", "H", "W"),
                        help="token grid the checkpoint was trained on, when not recorded")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing export at OUT (refused without it)")
    export.add_argument("--without-fc-norm", action="store_true",
                        help="export a pooled-distilled student's encoder without its trained "
                             "pooled LayerNorm (neither layout can hold it; refused without this)")
    for sub_parser in (inspect, export):
        sub_parser.add_argument("--trust-checkpoint", action="store_true",
                                help="allow arbitrary unpickling (only for files you trust)")
    args = parser.parse_args(argv)
    try:
        check_flags(args, {"--num-heads": (1, None), "--num-frames": (1, None), "--img-size": (1, None),
                           "--source-grid": (1, None)})
        if args.command == "inspect":
            print(describe(read_checkpoint(args.path, args.trust_checkpoint)))
            return 0
        check_export_target(args.out, args.to, args.overwrite)  # before any work
        overrides = {"num_heads": args.num_heads, "num_frames": args.num_frames,
                     "img_size": tuple(args.img_size) if args.img_size else None}
        ckpt = read_checkpoint(args.path, args.trust_checkpoint)
        model, report = build_from_checkpoint(ckpt, args.prefix, args.trust_checkpoint,
                                              args.source_grid, **overrides)
        _check_trained_fc_norm(ckpt, report.prefix, args.without_fc_norm)
        if not report.skipped:
            print(report)
        written = (write_hf if args.to == "hf" else write_official)(model, args.out, args.overwrite)
        print(f"wrote {written} ({args.to} layout)")
        return 0
    except (CheckpointError, OSError, FlagError) as err:  # bad flags; missing, unreadable or unwritable files
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
