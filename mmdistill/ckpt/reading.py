"""Read any checkpoint container researchers hand over into one `Checkpoint`: a flat state dict
plus metadata, from a DeepSpeed directory, a Lightning .ckpt, an official VideoMAE .pth, a Hugging
Face directory/.safetensors/.bin, or our own training checkpoints. Wrapper prefixes (DDP,
Lightning, torch.compile) are stripped. Only tensors and plain containers are unpickled unless the
caller passes `trust_checkpoint=True`, since unpickling anything else can run code from the file.

Picking one encoder out of it is `mmdistill.ckpt.selection`; loading it, `mmdistill.ckpt.loading`.
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmdistill.ckpt import damage
from mmdistill.ckpt.format import FORMAT as TRAINING_FORMAT, is_training_checkpoint

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
        # A model-states file is DeepSpeed's by where it lies; `ds_version` is optional in it.
        if fmt not in ("deepspeed", "official") or not isinstance(obj.get("module"), dict):
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file  # safetensors holds tensors only: always safe

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise CheckpointError(_unreadable(path, err, damage.safetensors_truncation(path))) from err


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # A pickle cut short can stop inside a class name, which reads like a foreign class.
        truncation = damage.torch_truncation(path, err)
        needed = re.findall(r"GLOBAL ([\w.]+)", str(err))
        if "Weights only load failed" in str(err) and truncation is None \
                and damage.starts_like_torch(path):
            what = f"`{needed[0]}`" if needed else "an object that is not a tensor or plain container"
            raise UntrustedCheckpointError(
                f"refusing to unpickle {path}: it needs {what}, and unpickling arbitrary objects can "
                f"run code from the file. {TRUST_HINT}") from None
        raise CheckpointError(_unreadable(path, err, truncation)) from err
    except (ModuleNotFoundError, AttributeError) as err:  # trusted, but its classes are missing
        raise CheckpointError(f"cannot unpickle {path}: {err}; install the code that wrote it, or "
                              f"re-save its state_dict as tensors only") from err
    except MemoryError:
        raise
    except Exception as err:  # RuntimeError, EOFError, struct.error, IndexError on damaged files
        raise CheckpointError(_unreadable(path, err, damage.torch_truncation(path, err))) from err


def _unreadable(path: Path, err: Exception, truncation: str | None) -> str:
    """What to say about a file its reader refused: truncated (and how we know), or damaged."""
    if truncation is not None:
        return (f"cannot read {path}: the file is truncated ({truncation}); the copy or the write "
                f"that made it did not finish. Copy it again, or use another checkpoint.")
    reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}"
    if path.suffix != ".safetensors" and not damage.starts_like_torch(path):
        reason = "its first bytes are neither a zip archive's nor a pickle's"
    return (f"cannot read {path}: the file is damaged or not a {damage.kind_of(path)} "
            f"({reason}). Copy it again, or use another checkpoint.")


def _unwrap(obj: Any, file: Path) -> tuple[str, StateDict, dict[str, Any]]:
    """(format, weights, metadata) of a loaded container; see reference-systems.md section 3."""
    if isinstance(obj, torch.nn.Module):  # only reachable with trust_checkpoint=True
        return "module", obj.state_dict(), {}
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file} holds a {type(obj).__name__}, not a checkpoint dictionary")
    meta = {k: obj[k] for k in TRAINING_KEYS if k in obj}
    if is_training_checkpoint(obj):
        fmt, weights = TRAINING_FORMAT, obj.get("model")
        meta["arch"] = obj.get("arch") or {}
        if isinstance(obj.get("gin_config"), str):  # the operative config it was trained with
            meta["gin_config"] = obj["gin_config"]
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
