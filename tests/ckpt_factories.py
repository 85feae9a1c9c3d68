"""Real checkpoint files of every container structure the loader accepts, for tests.

Each writer produces the on-disk structure the named tool writes (see
/work/shared/design/reference-systems.md section 3), with tiny random models. The official and
Hugging Face layouts are produced from a `transformers` model by a key mapping written here by
hand, independent of `mmdistill.ckpt.keymaps`, so parity tests compare two implementations.
Import as `import ckpt_factories` (pytest puts tests/ on sys.path).
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch

from mmdistill.models.vit import VideoViT

# 4 frames of 32x48 with 16x16 patches: grid (2, 2, 3) = 12 tokens; fast on CPU.
TINY = dict(num_frames=4, img_size=(32, 48), embed_dim=64, depth=2, num_heads=2)


def perturb_(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter, so zero biases and identity norms cannot hide a wrong mapping."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return module.eval()


def tiny_vit(seed: int = 0, **overrides) -> VideoViT:
    torch.manual_seed(seed)
    return perturb_(VideoViT(**(TINY | overrides)), seed)


def clip(model: VideoViT, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """A random input clip (B, C, T, H, W) of the size `model` expects."""
    t, h, w = model.grid_size
    shape = (batch, model.in_chans, t * model.arch["tubelet_size"], h * model.arch["patch_size"],
             w * model.arch["patch_size"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- Hugging Face

def hf_model(seed: int = 0, use_mean_pooling: bool = False, in_chans: int = 3,
             image_size=(32, 48), num_frames: int = 4):
    """A random tiny `transformers.VideoMAEModel` with the official LayerNorm eps (1e-6)."""
    from transformers import VideoMAEConfig, VideoMAEModel

    config = VideoMAEConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=256, image_size=list(image_size),
                            num_frames=num_frames, num_channels=in_chans, layer_norm_eps=1e-6,
                            use_mean_pooling=use_mean_pooling)
    torch.manual_seed(seed)
    return perturb_(VideoMAEModel(config), seed)


def hf_tokens(model, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """HF takes (B, T, C, H, W); ours (B, C, T, H, W)."""
    with torch.no_grad():
        return model(pixel_values=x.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).last_hidden_state


def write_hf_dir(path: Path, model) -> Path:
    model.save_pretrained(path)
    return Path(path)


def hf_to_official(hf_state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """HF VideoMAEModel weights -> official VideoMAE encoder keys (inverse of HF's conversion)."""
    out = {prefix + "patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
           prefix + "patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"]}
    layer = 0
    while f"encoder.layer.{layer}.layernorm_before.weight" in hf_state:
        src, dst = f"encoder.layer.{layer}.", f"{prefix}blocks.{layer}."
        att = src + "attention.attention."
        out[dst + "attn.qkv.weight"] = torch.cat([hf_state[att + "query.weight"],
                                                  hf_state[att + "key.weight"],
                                                  hf_state[att + "value.weight"]])
        out[dst + "attn.q_bias"] = hf_state[att + "query.bias"]
        out[dst + "attn.v_bias"] = hf_state[att + "value.bias"]
        pairs = {"attention.output.dense": "attn.proj", "layernorm_before": "norm1",
                 "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1",
                 "output.dense": "mlp.fc2"}
        for hf_name, name in pairs.items():
            for part in ("weight", "bias"):
                out[f"{dst}{name}.{part}"] = hf_state[f"{src}{hf_name}.{part}"]
        layer += 1
    if "layernorm.weight" in hf_state:
        out[prefix + "norm.weight"] = hf_state["layernorm.weight"]
        out[prefix + "norm.bias"] = hf_state["layernorm.bias"]
    return out


def decoder_state(in_chans: int = 3, embed_dim: int = 64, decoder_dim: int = 32, depth: int = 1,
                  patch: int = 16, tubelet: int = 2, prefix: str = "") -> dict[str, torch.Tensor]:
    """The official pretraining model's non-encoder keys (decoder, projection, mask token)."""
    d = decoder_dim
    state = {prefix + "encoder_to_decoder.weight": torch.randn(d, embed_dim),
             prefix + "mask_token": torch.zeros(1, 1, d),
             prefix + "decoder.norm.weight": torch.ones(d), prefix + "decoder.norm.bias": torch.zeros(d),
             prefix + "decoder.head.weight": torch.randn(in_chans * tubelet * patch * patch, d),
             prefix + "decoder.head.bias": torch.zeros(in_chans * tubelet * patch * patch)}
    for i in range(depth):
        b = f"{prefix}decoder.blocks.{i}."
        state |= {b + "norm1.weight": torch.ones(d), b + "norm1.bias": torch.zeros(d),
                  b + "attn.qkv.weight": torch.randn(3 * d, d), b + "attn.q_bias": torch.zeros(d),
                  b + "attn.v_bias": torch.zeros(d), b + "attn.proj.weight": torch.randn(d, d),
                  b + "attn.proj.bias": torch.zeros(d), b + "norm2.weight": torch.ones(d),
                  b + "norm2.bias": torch.zeros(d), b + "mlp.fc1.weight": torch.randn(4 * d, d),
                  b + "mlp.fc1.bias": torch.zeros(4 * d), b + "mlp.fc2.weight": torch.randn(d, 4 * d),
                  b + "mlp.fc2.bias": torch.zeros(d)}
    return state


def pretraining_state(model: VideoViT, prefix: str = "") -> dict[str, torch.Tensor]:
    """`model` as the encoder of an official pretraining checkpoint (`encoder.` + decoder keys)."""
    encoder = {f"{prefix}encoder.{k}": v for k, v in model.state_dict().items()}
    return encoder | decoder_state(model.in_chans, model.embed_dim, prefix=prefix,
                                   patch=model.arch["patch_size"], tubelet=model.arch["tubelet_size"])


# ----------------------------------------------------------------------------- official .pth

def write_official_pth(path: Path, model_state: dict[str, torch.Tensor], args: dict | None = None,
                       epoch: int = 799) -> Path:
    """The official VideoMAE run output: {'model', 'optimizer', 'epoch', 'scaler', 'args'}."""
    payload = {"model": model_state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
               "epoch": epoch, "scaler": {"scale": 65536.0, "growth_tracker": 0}}
    if args is not None:
        payload["args"] = argparse.Namespace(**args)
    torch.save(payload, path)
    return Path(path)


# ----------------------------------------------------------------------------- Lightning / DeepSpeed

def distillation_state(dtype: torch.dtype = torch.float16):
    """A multi-model LightningModule state like the original's distillation run, in `dtype`.

    Returns (state_dict, models) where models maps each encoder prefix to the float32 VideoViT it
    came from (the teachers are pretraining models: `<name>.encoder.` plus a decoder).
    """
    models = {"student_rgb.": tiny_vit(10, in_chans=3),
              "teacher_rgb.encoder.": tiny_vit(11, in_chans=3),
              "teacher_flow.encoder.": tiny_vit(12, in_chans=2),
              "teacher_skeleton.encoder.": tiny_vit(13, in_chans=17)}
    state = {f"student_rgb.{k}": v for k, v in models["student_rgb."].state_dict().items()}
    for name in ("teacher_rgb.", "teacher_flow.", "teacher_skeleton."):
        state |= pretraining_state(models[name + "encoder."], prefix=name)
    for target in ("rgb", "flow", "skeleton"):
        state |= {f"cmt.mlp_to_{target}.fc1.weight": torch.randn(64, 64),
                  f"cmt.mlp_to_{target}.fc1.bias": torch.zeros(64),
                  f"cmt.mlp_to_{target}.fc2.weight": torch.randn(64, 64),
                  f"cmt.mlp_to_{target}.fc2.bias": torch.zeros(64)}
    return {k: v.to(dtype) for k, v in state.items()}, models


def lightning_client_state(epoch: int = 49, global_step: int = 5000) -> dict:
    return {"epoch": epoch, "global_step": global_step, "pytorch-lightning_version": "2.1.3",
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": epoch}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'train_loss'}": {
                "best_model_score": torch.tensor(0.6095), "best_model_path": "/out/last.ckpt"}},
            "hparams_name": "kwargs", "hyper_parameters": {"lr": 2e-3, "in_chans": 3}}


def write_deepspeed_dir(path: Path, module_state: dict[str, torch.Tensor], tag: str = "checkpoint",
                        zero3_partitioned: bool = False) -> Path:
    """A DeepSpeed checkpoint directory as Lightning's DeepSpeedStrategy writes it.

    `<path>/latest` names the tag; `<path>/<tag>/mp_rank_00_model_states.pt` holds `module` plus
    DeepSpeed and Lightning client state; an optimizer shard sits beside it. With
    `zero3_partitioned` the model states are a ZeRO-3 shard with empty parameter placeholders.
    """
    path = Path(path)
    (path / tag).mkdir(parents=True)
    (path / "latest").write_text(tag)
    module = ({k: torch.empty(0, dtype=v.dtype) for k, v in module_state.items()}
              if zero3_partitioned else module_state)
    payload = {"module": module, "buffer_names": [],
               "optimizer": None, "param_shapes": [collections.OrderedDict(
                   (k, v.shape) for k, v in module_state.items() if k.startswith("student"))],
               "frozen_param_shapes": None, "shared_params": {}, "frozen_param_fragments": None,
               "lr_scheduler": None, "sparse_tensor_module_names": set(), "skipped_steps": 0,
               "global_steps": 5000, "global_samples": 20000, "dp_world_size": 1,
               "mp_world_size": 1, "ds_config": {"train_micro_batch_size_per_gpu": 4,
                                                 "fp16": {"enabled": True}},
               "ds_version": "0.12.6"} | lightning_client_state()
    name = "zero_pp_rank_0_mp_rank_00_model_states.pt" if zero3_partitioned else "mp_rank_00_model_states.pt"
    torch.save(payload, path / tag / name)
    torch.save({"optimizer_state_dict": {"fp32_flat_groups": [torch.zeros(4)]}},
               path / tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return path


def write_lightning_ckpt(path: Path, state_dict: dict[str, torch.Tensor], epoch: int = 9,
                         global_step: int = 1000) -> Path:
    """A PyTorch-Lightning `.ckpt` file: `state_dict` plus trainer state."""
    payload = lightning_client_state(epoch, global_step) | {
        "state_dict": state_dict, "optimizer_states": [{"state": {}, "param_groups": []}],
        "lr_schedulers": [{"last_epoch": 3}]}
    torch.save(payload, path)
    return Path(path)


# ----------------------------------------------------------------------------- ours

def write_mmdistill_ckpt(path: Path, models: dict[str, VideoViT],
                         extra: dict[str, torch.Tensor] | None = None, epoch: int = 4) -> Path:
    """Our own format as mmdistill/train/training_checkpoint.py writes it (format and version spelled
    out, as on disk): flat `model` with prefixes plus `arch` per prefix."""
    state = {f"{prefix}{k}": v for prefix, m in models.items() for k, v in m.state_dict().items()}
    payload = {"format": "mmdistill", "version": 1, "model": state | (extra or {}),
               "arch": {prefix: dict(m.arch) for prefix, m in models.items()},
               "optimizer": {"state": {}, "param_groups": []}, "epoch": epoch,
               "global_step": 40, "metrics": {"train_loss": 0.5}}
    torch.save(payload, path)
    return Path(path)


# ----------------------------------------------------------------------------- unsafe pickles

def mark_executed(marker: str) -> dict:
    """What a malicious pickle would run: here it only leaves a file behind as evidence."""
    Path(marker).write_text("code from the checkpoint ran")
    return {}


class CodeOnLoad:
    """An object whose unpickling calls `mark_executed` (any function could stand there)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (mark_executed, (self.marker,))


def write_untrusted_pth(path: Path, model_state: dict[str, torch.Tensor], marker: Path) -> Path:
    torch.save({"model": model_state, "trainer": CodeOnLoad(str(marker))}, path)
    return Path(path)
