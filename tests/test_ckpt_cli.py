"""`python -m mmdistill.ckpt inspect|export`."""
import runpy
import sys

import pytest
import torch

import ckpt_factories as cf
from mmdistill.ckpt.command import main
from mmdistill.ckpt.reading import read_checkpoint
from mmdistill.ckpt.loading import load_pretrained
from mmdistill.models.vit import VideoViT


@pytest.fixture(scope="module")
def deepspeed_dir(tmp_path_factory):
    state, models = cf.distillation_state(torch.float16)
    return cf.write_deepspeed_dir(tmp_path_factory.mktemp("ds") / "epoch=49-loss=0.6095", state)


def test_inspect_lists_models_architectures_and_training_state(deepspeed_dir, capsys):
    assert main(["inspect", str(deepspeed_dir)]) == 0
    out = capsys.readouterr().out
    assert "format: deepspeed" in out and "mp_rank_00_model_states.pt" in out
    assert "epoch=49" in out and "global_step=5000" in out and "loss (from name)=0.6095" in out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()}
    assert "in_chans=3 embed_dim=64 depth=2" in lines["'student_rgb.'"]
    assert "in_chans=2" in lines["'teacher_flow.encoder.'"]
    assert "in_chans=17" in lines["'teacher_skeleton.encoder.'"]
    assert "pooling=norm + mean" in lines["'student_rgb.'"]
    assert "float16" in out and "other group 'cmt.': 12 tensors" in out
    assert "decoder/pretraining/classifier tensors" in out


@pytest.mark.filterwarnings("ignore:'mmdistill.ckpt.__main__' found in sys.modules")
def test_inspect_runs_as_a_module_on_an_official_pth(tmp_path, monkeypatch, capsys):
    path = cf.write_official_pth(tmp_path / "a.pth", cf.tiny_vit().state_dict(),
                                 args={"model": "vit_custom", "num_frames": 4, "input_size": (32, 48)})
    # `python -m mmdistill.ckpt`, run in this process (a fresh interpreter costs seconds of imports)
    monkeypatch.setattr(sys, "argv", ["mmdistill.ckpt", "inspect", str(path)])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("mmdistill.ckpt", run_name="__main__")
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "format: official" in out and "epoch=799" in out
    assert "input=4x32x48" in out and "num_frames=4" in out


@pytest.mark.parametrize("use_mean_pooling", [False, True])
def test_export_to_hugging_face_round_trips(tmp_path, use_mean_pooling):
    from transformers import VideoMAEModel

    student = cf.tiny_vit(4, use_mean_pooling=use_mean_pooling)
    ours = cf.write_mmdistill_ckpt(tmp_path / "last.ckpt", {"student.": student},
                                   extra={"heads.flow.fc1.weight": torch.zeros(4, 64)})
    assert main(["export", str(ours), "--to", "hf", str(tmp_path / "hf"), "--prefix", "student."]) == 0
    hf = VideoMAEModel.from_pretrained(tmp_path / "hf").eval()
    x = cf.clip(student)
    with torch.no_grad():
        torch.testing.assert_close(cf.hf_tokens(hf, x), student(x)[0], rtol=0, atol=1e-5)


def test_export_to_official_round_trips(tmp_path, deepspeed_dir):
    out = tmp_path / "flow_teacher.pth"
    # Lightning/DeepSpeed files record neither head count nor input size: the user gives them
    assert main(["export", str(deepspeed_dir), "--to", "official", str(out), "--prefix",
                 "teacher_flow.", "--num-heads", "2", "--num-frames", "4", "--img-size", "32", "48"]) == 0
    payload = torch.load(out, weights_only=False)
    assert "blocks.0.attn.q_bias" in payload["model"] and payload["args"].num_frames == 4
    exported, reference = VideoViT(**cf.TINY, in_chans=2), VideoViT(**cf.TINY, in_chans=2)
    load_pretrained(exported, out)
    load_pretrained(reference, deepspeed_dir, prefix="teacher_flow.")
    x = cf.clip(exported)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(x)[0], reference.eval()(x)[0], rtol=0, atol=0)


def test_resampled_sinusoid_exports_as_a_learned_table(tmp_path):
    student = cf.tiny_vit(sincos_grid=(2, 2, 2))
    ours = cf.write_mmdistill_ckpt(tmp_path / "a.ckpt", {"student.": student})
    assert main(["export", str(ours), "--to", "hf", str(tmp_path / "hf")]) == 2
    assert main(["export", str(ours), "--to", "official", str(tmp_path / "a.pth")]) == 0
    model = VideoViT(**cf.TINY, pos_embed="learned")
    load_pretrained(model, tmp_path / "a.pth")
    torch.testing.assert_close(model.pos_embed.detach(), student.pos_embed)


@pytest.mark.parametrize("make_args, message", [
    (lambda p: ["inspect", str(p / "missing.ckpt")], "does not exist"),
    (lambda p: ["export", str(p / "a.pth"), "--to", "hf", str(p / "a.pth")], "is a file"),
    (lambda p: ["export", str(p / "a.pth"), "--to", "official", str(p)], "is a directory"),
    (lambda p: ["inspect", str(p / "bad.pth")], "--trust-checkpoint"),
])
def test_cli_errors_exit_2_with_the_reason(tmp_path, capsys, make_args, message):
    cf.write_official_pth(tmp_path / "a.pth", cf.tiny_vit().state_dict())
    cf.write_untrusted_pth(tmp_path / "bad.pth", {}, tmp_path / "ran")
    assert main(make_args(tmp_path)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ran").exists()
    assert read_checkpoint(tmp_path / "a.pth").format == "official"  # nothing was overwritten
