"""Errors that used to point at the wrong cause now name the setting at fault (issue 25, class 7):
validation settings on a non-RGB pretraining, a misspelt modality in evaluate.modalities, and
an init checkpoint deleted before a resume."""
import gin
import pytest

from context_factories import cpu_context
from mmdistill.evaluation import evaluate_stage
from mmdistill.stages import pretrain_stage

TINY = ["video_vit.embed_dim = 32", "video_vit.depth = 1", "video_vit.num_heads = 2",
        "video_vit.num_frames = 4", "video_vit.img_size = (32, 32)", "video_vit.patch_size = 16"]


@pytest.fixture(autouse=True)
def fresh_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_validation_on_a_flow_pretraining_is_named_as_such(tmp_path):
    gin.parse_config(TINY + ["validation.eval_every = 1",
                             "validation.annotations = 'val.json'", "train.keep_best_k = 2"])
    with pytest.raises(ValueError, match="train.keep_best_k .* pretrain.modality='flow' is not validated: "
                                         "few-shot validation .* reads RGB clips"):
        pretrain_stage(cpu_context(tmp_path), None, modality="flow")


def test_a_misspelt_modality_is_named_in_evaluate_modalities(tmp_path):
    model = tmp_path / "flow.pth"
    model.write_bytes(b"")
    with pytest.raises(ValueError, match=r"evaluate.modalities = \{'teacher_flow': 'flwo'\}.*did you "
                                         r"mean 'flow'"):
        evaluate_stage(cpu_context(tmp_path), None, baselines={"teacher_flow": str(model)},
                       modalities={"teacher_flow": "flwo"})


def test_a_deleted_init_checkpoint_on_resume_says_to_put_it_back(tmp_path):
    gin.parse_config(TINY)
    with pytest.raises(FileNotFoundError, match="pretrain.init_checkpoint .*gone.pth no longer exists.*"
                                                "put the file back"):
        pretrain_stage(cpu_context(tmp_path), tmp_path / "last.ckpt",
                       init_checkpoint=str(tmp_path / "gone.pth"))


@pytest.mark.parametrize("main, argv, flag", [
    ("mmdistill.prepare.__main__", ["frames", "--videos", "{tmp}/videos", "--out", "{tmp}/out",
                                    "--short-side", "0"], "--short-side 0: must be at least 1"),
    ("mmdistill.prepare.__main__", ["flow", "--data", "{tmp}/out", "--workers", "0"],
     "--workers 0: must be at least 1"),
    ("mmdistill.data.__main__", ["cache", "--gin_file", "{tmp}/missing.gin", "--num_workers", "-1"],
     "--num_workers -1: must be at least 0"),
    ("mmdistill.ckpt.command", ["export", "{tmp}/missing.ckpt", "{tmp}/out", "--to", "hf", "--num-heads", "0"],
     "--num-heads 0: must be at least 1"),
    ("mmdistill.demo.cli", ["{tmp}/out", "--clips-per-class", "0"], "--clips-per-class must be >= 1"),
])
def test_every_command_checks_its_numbers_by_flag_before_any_work(tmp_path, capsys, main, argv, flag):
    import importlib

    (tmp_path / "videos" / "serve").mkdir(parents=True)
    (tmp_path / "videos" / "serve" / "serve1.mp4").write_bytes(b"")
    code = importlib.import_module(main).main([a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
