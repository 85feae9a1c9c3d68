"""Read any checkpoint researchers hand over and load one video ViT out of it, strictly and safely.

Three steps, each usable alone:
  `read_checkpoint(path)`     container -> flat state dict + metadata (DeepSpeed dir, Lightning
                              .ckpt, official .pth, HF dir/.safetensors/.bin, our own files);
  `select_model(ckpt, prefix)` one encoder out of it, in our key layout, with its inferred arch;
  `load_pretrained(model, path, prefix)` both, plus the architecture check, the position-table
                              resample and a strict key check, returning a `LoadReport`.
Only tensors and plain containers are unpickled unless the caller passes `trust_checkpoint=True`.
"""
from __future__ import annotations

import argparse
import collections
import difflib
import json
import math
import pathlib
import pickle
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gin
import torch

from mmdistill.models import keymaps
from mmdistill.models.pos_embed import Grid, guess_grid, resample_pos_embed
from mmdistill.models.vit import SIZES, VideoViT

StateDict = dict[str, torch.Tensor]

WRAPPER_PREFIXES = ("_forward_module.", "module.", "_orig_mod.")
# Types a weights-only load may build besides tensors and builtins: all hold plain data only.
# Lightning's AttributeDict (a dict subclass) is read as an OrderedDict.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, pathlib.PosixPath] + [
    (collections.OrderedDict, name) for name in (
        "lightning.fabric.utilities.data.AttributeDict",
        "lightning_fabric.utilities.data.AttributeDict",
        "pytorch_lightning.utilities.parsing.AttributeDict")]
DS_MODEL_STATES = "mp_rank_00_model_states.pt"
DS_ZERO_SHARD = "zero_pp_rank_*_mp_rank_00_model_states.pt"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Training metadata a container may carry beside the weights (kept, shown by `ckpt inspect`).
TRAINING_KEYS = ("epoch", "global_step", "global_steps", "metrics", "version",
                 "pytorch-lightning_version", "ds_version", "wandb_run_id")
TRUST_HINT = ("If you trust whoever made this file, pass trust_checkpoint=True (gin: "
              "pretrained.trust_checkpoint = True; CLI: --trust-checkpoint).")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message names the file and the fix."""


class UntrustedCheckpointError(CheckpointError):
    """The file needs arbitrary unpickling, which could run code from the file."""


class ArchitectureMismatchError(CheckpointError):
    """The weights describe another architecture than the model they are loaded into."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


@dataclass
class Checkpoint:
    """One checkpoint read into memory: `format`, flat `state_dict`, `metadata`, where it came from."""

    format: str  # deepspeed | lightning | official | hf | mmdistill | state_dict
    state_dict: StateDict
    metadata: dict[str, Any]
    path: Path  # what the user gave
    file: Path  # the file the weights were read from


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


@dataclass
class LoadReport:
    """What `load_pretrained` did; `str(report)` is the human-readable account."""

    path: str
    format: str
    prefix: str
    layout: str
    strict: bool
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    cast: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape_mismatch)

    def __str__(self) -> str:
        lines = [f"loaded {self.loaded} tensors from {self.path} ({self.format}, "
                 f"{self.layout} layout, prefix {self.prefix!r}, strict={self.strict})"]
        for title, keys in (("missing (left at init)", self.missing),
                            ("unexpected (ignored)", self.unexpected),
                            ("shape mismatch (ignored)", self.shape_mismatch),
                            ("dropped (not encoder weights)", self.dropped),
                            ("kept at init", self.kept_init), ("resampled", self.resampled)):
            if keys:
                lines.append(f"  {title}: {_short_list(keys)}")
        if self.cast:
            lines.append("  cast: " + ", ".join(f"{k} ({n} tensors)" for k, n in self.cast.items()))
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _short_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


# ----------------------------------------------------------------------------- reading containers

def read_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> Checkpoint:
    """Read a checkpoint of any supported container into a flat state dict plus metadata."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(
            f"checkpoint path {path} does not exist. Give a DeepSpeed checkpoint directory (the one "
            f"holding `latest`), a Hugging Face model directory, or a .ckpt/.pth/.pt/.safetensors/"
            f".bin file.")
    if path.is_dir():
        return _read_directory(path, trust_checkpoint)
    _refuse_deepspeed_part(path)
    if path.suffix == ".safetensors":
        return _finish(path, path, "hf", _load_safetensors(path), {})
    obj = _torch_load(path, trust_checkpoint)
    fmt, weights, metadata = _unwrap(obj, path)
    if path.suffix == ".bin" and fmt == "state_dict":
        fmt = "hf"
    if fmt == "deepspeed":
        _refuse_partitioned(weights, path.parent.parent)
    return _finish(path, path, fmt, weights, metadata)


def _read_directory(path: Path, trust: bool) -> Checkpoint:
    if (path / "config.json").is_file() and any((path / f).is_file() for f in HF_WEIGHT_FILES):
        return _read_hf_directory(path, trust)
    model_states = _deepspeed_model_states(path)
    if model_states is not None:
        obj = _torch_load(model_states, trust)
        fmt, weights, metadata = _unwrap(obj, model_states)
        if fmt != "deepspeed":
            raise CheckpointError(f"{model_states} is not a DeepSpeed model-states file (no "
                                  f"`module` entry); the directory {path} is damaged")
        _refuse_partitioned(weights, path)
        return _finish(path, model_states, "deepspeed", weights, metadata)
    inside = sorted(p.name for p in path.iterdir())
    candidates = [n for n in inside if n.endswith((".ckpt", ".pth", ".pt", ".safetensors", ".bin"))]
    hint = (f"it contains checkpoint files; pass one of them: {', '.join(candidates[:8])}"
            if candidates else f"it contains: {', '.join(inside[:12]) or 'nothing'}")
    raise CheckpointError(
        f"{path} is a directory but neither a DeepSpeed checkpoint (no `latest` file or "
        f"<tag>/{DS_MODEL_STATES}) nor a Hugging Face model (config.json + model.safetensors); {hint}")


def _deepspeed_model_states(path: Path) -> Path | None:
    """The model-states file of a DeepSpeed dir (or of one of its tag dirs); None if not DeepSpeed."""
    latest = path / "latest"
    if latest.is_file():
        tag = latest.read_text().strip()
        tag_dir = path / tag
        if not tag_dir.is_dir():
            present = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise CheckpointError(f"{latest} names the tag {tag!r}, but {tag_dir} is missing "
                                  f"(tag directories present: {present}); the copy is incomplete")
    elif _model_states_in(path) is not None:
        tag_dir = path  # the user gave the tag directory itself
    else:
        tags = [p for p in sorted(path.iterdir()) if p.is_dir() and _model_states_in(p)]
        if not tags:
            return None
        if len(tags) > 1:
            raise CheckpointError(f"{path} holds several DeepSpeed tags and no `latest` file: "
                                  f"{[t.name for t in tags]}; pass {path}/<tag>")
        tag_dir = tags[0]
    found = _model_states_in(tag_dir)
    if found is None:
        raise CheckpointError(f"DeepSpeed tag directory {tag_dir} has no {DS_MODEL_STATES} "
                              f"(nor a ZeRO shard {DS_ZERO_SHARD}); the copy is incomplete")
    return found


def _model_states_in(folder: Path) -> Path | None:
    if (folder / DS_MODEL_STATES).is_file():
        return folder / DS_MODEL_STATES
    shards = sorted(folder.glob(DS_ZERO_SHARD))
    return shards[0] if shards else None


def _refuse_deepspeed_part(path: Path) -> None:
    """A file that is only a piece of a DeepSpeed checkpoint: say which directory to pass."""
    if path.name == "latest" or path.name.endswith("_optim_states.pt"):
        root = path.parent if path.name == "latest" else path.parent.parent
        raise CheckpointError(f"{path} is part of a DeepSpeed checkpoint, not a checkpoint by itself; "
                              f"pass the directory {root} (the one holding `latest`)")


def _refuse_partitioned(weights: StateDict, path: Path) -> None:
    """ZeRO-3 shards keep 0-element placeholders; the real weights sit in the optimizer shards."""
    if weights and all(t.numel() == 0 for t in weights.values()):
        raise CheckpointError(
            f"{path} is a ZeRO-3 checkpoint whose parameters are partitioned across the optimizer "
            f"shards (the model-states file holds empty placeholders). Consolidate it first with "
            f"DeepSpeed's script saved next to it: `python {path}/zero_to_fp32.py {path} "
            f"consolidated.pt`, then load consolidated.pt")


def _read_hf_directory(path: Path, trust: bool) -> Checkpoint:
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") not in (None, "videomae"):
        raise CheckpointError(f"{path}/config.json has model_type={config.get('model_type')!r}; "
                              f"only VideoMAE models ('videomae') can be loaded")
    weights_file = next(path / f for f in HF_WEIGHT_FILES if (path / f).is_file())
    if weights_file.suffix == ".safetensors":
        weights = _load_safetensors(weights_file)
    else:
        weights = _unwrap(_torch_load(weights_file, trust), weights_file)[1]
    return _finish(path, weights_file, "hf", weights, {"hf_config": config})


def _load_safetensors(path: Path) -> StateDict:
    from safetensors.torch import load_file  # safetensors holds tensors only: always safe

    return load_file(str(path))


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        needed = re.findall(r"GLOBAL ([\w.]+)", str(err))
        if "Weights only load failed" in str(err):
            what = f"`{needed[0]}`" if needed else "an object that is not a tensor or plain container"
            raise UntrustedCheckpointError(
                f"refusing to unpickle {path}: it needs {what}, and unpickling arbitrary objects can "
                f"run code from the file. {TRUST_HINT}") from None
        raise CheckpointError(f"cannot read {path}: {err}. The file is damaged or not a PyTorch "
                              f"checkpoint.") from err
    except (ModuleNotFoundError, AttributeError) as err:  # trusted, but its classes are missing
        raise CheckpointError(f"cannot unpickle {path}: {err}; install the code that wrote it, or "
                              f"re-save its state_dict as tensors only") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read {path}: {type(err).__name__}: {err}. The file is "
                              f"damaged or not a PyTorch checkpoint.") from err


def _unwrap(obj: Any, file: Path) -> tuple[str, StateDict, dict[str, Any]]:
    """(format, weights, metadata) of a loaded container; see reference-systems.md section 3."""
    if isinstance(obj, torch.nn.Module):  # only reachable with trust_checkpoint=True
        return "module", obj.state_dict(), {}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file} holds a {type(obj).__name__}, not a checkpoint dictionary")
    meta = {k: obj[k] for k in TRAINING_KEYS if k in obj}
    if obj.get("format") == "mmdistill":
        fmt, weights = "mmdistill", obj.get("model")
        meta["arch"] = obj.get("arch") or {}
    elif isinstance(obj.get("module"), dict):  # DeepSpeed; some official releases use it too
        fmt = "deepspeed" if "ds_version" in obj or "buffer_names" in obj else "official"
        weights = obj["module"]
    elif isinstance(obj.get("state_dict"), dict):
        fmt, weights = "lightning", obj["state_dict"]
    elif isinstance(obj.get("model"), dict):
        fmt, weights = "official", obj["model"]
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        if isinstance(args, dict):
            meta["args"] = args
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        fmt, weights = "state_dict", obj
    else:
        raise CheckpointError(
            f"found no weights in {file}: its top-level keys are {sorted(map(str, obj))[:15]}; "
            f"expected 'state_dict' (Lightning), 'module' (DeepSpeed), 'model' (official VideoMAE, "
            f"mmdistill) or a flat state dict")
    if "hyper_parameters" in obj:
        meta["hyper_parameters"] = obj["hyper_parameters"]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{file}: the weights entry is a {type(weights).__name__}, not a dict")
    non_tensor = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        meta["non_tensor_entries"] = non_tensor
    return fmt, {k: v for k, v in weights.items() if isinstance(v, torch.Tensor)}, meta


def _finish(path: Path, file: Path, fmt: str, weights: StateDict, meta: dict) -> Checkpoint:
    weights, stripped = strip_wrappers(weights)
    if stripped:
        meta["stripped_prefixes"] = stripped
    fields = {k: v.rstrip(".") for k, v in re.findall(r"([A-Za-z_]+)=(-?[\d.]+(?:e-?\d+)?)", path.name)}
    if fields:
        meta["name_fields"] = fields  # e.g. epoch=49-loss=0.6095 as Lightning names checkpoints
    if not weights:
        raise CheckpointError(f"{file} holds no tensors")
    return Checkpoint(fmt, weights, meta, path, file)


def strip_wrappers(state_dict: StateDict) -> tuple[StateDict, list[str]]:
    """Remove Lightning/DDP/torch.compile wrapper prefixes: leading ones shared by every key, and
    `_orig_mod.` anywhere (torch.compile's, never a real module name)."""
    stripped: list[str] = []
    keys = list(state_dict)
    while True:
        lead = next((p for p in WRAPPER_PREFIXES if keys and all(k.startswith(p) for k in keys)), None)
        if lead is None:
            break
        stripped.append(lead)
        keys = [k[len(lead):] for k in keys]
    renamed = [k.replace("._orig_mod.", ".") for k in keys]
    if renamed != keys:
        stripped.append("._orig_mod.")
    return dict(zip(renamed, state_dict.values())), stripped


# ----------------------------------------------------------------------------- selecting a model

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


# ----------------------------------------------------------------------------- architecture

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
    recorded = _recorded_arch(ckpt, root, dim) if ckpt is not None else {}
    arch.update({k: v for k, v in recorded.items() if k not in arch or arch[k] is None})
    arch["num_heads_known"] = "num_heads" in recorded
    if "num_heads" not in arch:
        arch["num_heads"] = SIZES_BY_DIM.get(dim, dim // 64 if dim % 64 == 0 else None)
    return arch


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
    return problems


# ----------------------------------------------------------------------------- loading

def load_pretrained(model: VideoViT, path: str | Path | Checkpoint, prefix: str | None = None,
                    strict: bool = True, trust_checkpoint: bool = False,
                    source_grid: Grid | None = None) -> LoadReport:
    """Load one encoder from any supported checkpoint into `model`; see the module docstring.

    `source_grid` (T', H', W') overrides the training grid of the checkpoint's position table when
    its metadata does not record it. With `strict=False` the report is printed when keys were
    skipped.
    """
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, trust_checkpoint)
    return _load_view(model, ckpt, select_model(ckpt, prefix, source_grid), strict)


def _load_view(model: VideoViT, ckpt: Checkpoint, view: ModelView, strict: bool) -> LoadReport:
    """`load_pretrained` once the encoder is selected (build_from_checkpoint has it already)."""
    where = f"{ckpt.path}" + (f" (prefix {view.root!r})" if view.root else "")
    problems = arch_mismatches(view.arch, model)
    if problems:
        raise ArchitectureMismatchError(
            f"checkpoint {where} does not fit the model: " + "; ".join(problems)
            + ". Set the video_vit gin parameters to match the checkpoint, or pick another "
              "checkpoint/prefix (`python -m mmdistill.ckpt inspect PATH` shows its architecture).")
    report = LoadReport(str(ckpt.path), ckpt.format, view.root, view.layout, strict,
                        dropped=view.dropped)
    if view.ignored:
        report.notes.append(f"{view.ignored} tensors of other models in the checkpoint were not used")
    if not view.arch["num_heads_known"]:
        report.notes.append(f"the checkpoint does not record its head count; the model's "
                            f"num_heads={model.arch['num_heads']} is assumed")
    source = dict(view.state_dict)
    _place_position_table(model, view, source, report, where)
    target = model.state_dict()
    if view.arch["use_mean_pooling"] is None and model.arch["use_mean_pooling"]:
        report.kept_init += ["fc_norm.weight", "fc_norm.bias"]  # the source had no pooling norm
        report.notes.append("the source has no fc_norm (a VideoMAEModel with mean pooling); fc_norm "
                            "is kept at its identity init")
    report.missing = [k for k in target if k not in source and k not in report.kept_init]
    report.unexpected = [k for k in source if k not in target]
    report.shape_mismatch = [f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
                             for k in source if k in target and source[k].shape != target[k].shape]
    if strict and report.skipped:
        raise CheckpointError(
            f"checkpoint {where} does not match the model key for key:"
            + (f"\n  missing: {_short_list(report.missing)}" if report.missing else "")
            + (f"\n  unexpected: {_short_list(report.unexpected)}" if report.unexpected else "")
            + (f"\n  shape mismatch: {_short_list(report.shape_mismatch)}" if report.shape_mismatch else "")
            + "\nPick the right prefix/checkpoint, or set pretrained.strict = False to load the "
              "matching keys (what is skipped is then printed).")
    usable = {}
    for key, value in source.items():
        if key in target and value.shape == target[key].shape:
            if value.dtype != target[key].dtype:
                change = f"{value.dtype} -> {target[key].dtype}".replace("torch.", "")
                report.cast[change] = report.cast.get(change, 0) + 1
            usable[key] = value.to(target[key].dtype)
    # Key matching was checked above (an error when strict); here only the matching subset is
    # loaded, and the report printed below lists everything that was not.
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    if report.skipped:
        print(report, flush=True)
    return report


def _place_position_table(model: VideoViT, view: ModelView, source: StateDict,
                          report: LoadReport, where: str) -> None:
    """Resample a learned table into `source`, or set the model's fixed table to the source grid."""
    grid = view.source_grid
    if model.arch["pos_embed"] == "learned":
        table = source["pos_embed"]
        if grid is None:
            grid = guess_grid(table.shape[-2], model.grid_size)
            if grid is not None and grid != model.grid_size:
                report.notes.append(f"pos_embed grid {grid} inferred from its {table.shape[-2]} "
                                    f"tokens (square frames assumed; override with source_grid)")
        if grid is None:
            raise CheckpointError(
                f"checkpoint {where} has a learned pos_embed of {table.shape[-2]} tokens and does "
                f"not record its input size; pass source_grid=(T', H', W') (gin: "
                f"pretrained.source_grid) so it can be resampled to {model.grid_size}")
        if tuple(grid) != model.grid_size:
            source["pos_embed"] = resample_pos_embed(table, grid, model.grid_size)
            report.resampled.append(f"pos_embed: {tuple(grid)} -> {model.grid_size}")
        return
    if grid is None:
        report.notes.append(f"position table: the model's fixed sinusoid table for "
                            f"{model.grid_size} (the checkpoint records no input size; pass "
                            f"source_grid if it was trained at another size)")
    elif tuple(grid) != model.grid_size:
        model.use_sincos_table_of(grid)
        report.resampled.append(f"fixed sinusoid table: {tuple(grid)} -> {model.grid_size}")
    else:
        model.use_sincos_table_of(None)
        report.notes.append(f"position table: fixed sinusoid for {model.grid_size}, as trained")


def build_from_checkpoint(path: str | Path | Checkpoint, prefix: str | None = None,
                          trust_checkpoint: bool = False, source_grid: Grid | None = None,
                          **overrides: Any) -> tuple[VideoViT, LoadReport]:
    """Build a VideoViT with the checkpoint's own architecture and load it (overrides win)."""
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, trust_checkpoint)
    view = select_model(ckpt, prefix, source_grid)
    arch = view.arch
    if arch["num_heads"] is None and "num_heads" not in overrides:
        raise CheckpointError(f"cannot tell the head count of {ckpt.path} (embed_dim "
                              f"{arch['embed_dim']}); pass num_heads")
    kwargs: dict[str, Any] = {k: arch[k] for k in ("in_chans", "embed_dim", "depth", "num_heads",
                                                   "tubelet_size", "patch_size", "pos_embed")}
    kwargs["mlp_ratio"] = arch["mlp_ratio"] or 4.0
    kwargs["init_values"] = 1e-5 if arch["layer_scale"] else 0.0  # values come from the weights
    kwargs["use_mean_pooling"] = arch["use_mean_pooling"] is not False
    grid = view.source_grid
    if grid is None and arch["pos_embed"] == "learned":
        default = (16 // arch["tubelet_size"], 224 // arch["patch_size"], 224 // arch["patch_size"])
        grid = guess_grid(arch["num_tokens"], default)
    if "num_frames" in arch and "img_size" in arch:  # recorded input size of the model itself
        kwargs["num_frames"], kwargs["img_size"] = arch["num_frames"], tuple(arch["img_size"])
    elif grid is not None:
        kwargs["num_frames"] = grid[0] * arch["tubelet_size"]
        kwargs["img_size"] = (grid[1] * arch["patch_size"], grid[2] * arch["patch_size"])
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    model = VideoViT(**kwargs)
    view = replace(view, source_grid=tuple(grid) if grid is not None else None)
    return model, _load_view(model, ckpt, view, strict=True)


@gin.configurable("pretrained")
def initialise_from_checkpoint(model: VideoViT, path: str | None = None, prefix: str | None = None,
                               strict: bool = True, trust_checkpoint: bool = False,
                               source_grid: Grid | None = None) -> LoadReport | None:
    """gin entry: `teacher_flow/pretrained.path = '...'`; does nothing when path is None."""
    if path is None:
        return None
    report = load_pretrained(model, path, prefix, strict, trust_checkpoint, source_grid)
    if not report.skipped:
        print(report, flush=True)
    return report
