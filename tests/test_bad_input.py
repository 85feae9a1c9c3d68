"""Bad settings and bad data as a user meets them: every typed train.*, data_loader.* and
experiment.* parameter refused up front with the binding, its type and a value that works; and
run.py ending an expected error with its cause as the last line (the traceback in console.log)
while a bug still shows its traceback."""
import importlib.util
import json
import signal
import sys
from pathlib import Path

import gin
import pytest
import torch
from toy_objective import ToyDataset, ToyObjective, make_loader

import data_factories as df
from context_factories import cpu_context
from mmdistill import experiment as exp
from mmdistill.checks import SettingError
from mmdistill.config import parse_config
from mmdistill.data.dataset import build_loader
from mmdistill.data.sources import BadClipError
from mmdistill.train import optim
from mmdistill.train.loop import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def keep_sigterm_handler():
    """run.main installs its SIGTERM handler; the test process keeps its own."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def load_run_py():
    spec = importlib.util.spec_from_file_location("run_cli_bad_input", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- typed settings -----------------------------------------------------------------------------

@pytest.mark.parametrize("setting, value, message", [
    ("lr", "abc", "train.lr='abc' is a str; give a number such as train.lr=0.001 (no quotes)"),
    ("lr", "2e-3", "train.lr='2e-3' is a str; give a number such as train.lr=0.002 (no quotes)"),
    ("lr", -0.1, "train.lr=-0.1: must be a number >= 0"),
    ("min_lr", "1e-6", "train.min_lr='1e-6' is a str; give a number such as train.min_lr=1e-06 (no quotes)"),
    ("warmup_lr", None, "train.warmup_lr=None is a NoneType; give a number such as train.warmup_lr=1e-06"),
    ("warmup_epochs", "5", "train.warmup_epochs='5' is a str; give a number such as train.warmup_epochs=5 (no quotes)"),
    ("weight_decay", float("nan"), "train.weight_decay=nan: must be a number >= 0"),
    ("betas", (0.9,), "train.betas=(0.9,) is a tuple; give 2 numbers such as train.betas=(0.9, 0.999)"),
    ("betas", (0.9, 1.5), "train.betas=(0.9, 1.5): each must be in [0, 1), such as train.betas=(0.9, 0.999)"),
    ("clip_grad", "1.0", "train.clip_grad='1.0' is a str; give None or a number such as train.clip_grad=1.0 (no quotes)"),
    ("epochs", 10.0, "train.epochs=10.0 is a float; give a whole number such as train.epochs=10"),
    ("epochs", 0, "train.epochs=0: must be an integer >= 1"),
    ("accum_steps", "2", "train.accum_steps='2' is a str; give a whole number such as train.accum_steps=2 (no quotes)"),
    ("log_every", True, "train.log_every=True is a bool; give a whole number such as train.log_every=1"),
    ("save_ckpt_freq", -1, "train.save_ckpt_freq=-1: must be an integer >= 1"),
    ("keep_last_k", 0, "train.keep_last_k=0: must be an integer >= 1 (or None)"),
    ("max_nonfinite", "ten", "train.max_nonfinite='ten' is a str; give a whole number such as train.max_nonfinite=1 (no quotes)"),
])
def test_every_typed_train_setting_is_refused_by_name_before_anything_runs(tmp_path, setting,
                                                                           value, message):
    ctx = cpu_context(tmp_path)
    with pytest.raises(SettingError) as refused:
        train(ToyObjective(), make_loader(ToyDataset(n=8), 4), ctx, **{setting: value})
    assert str(refused.value).splitlines()[0] == message  # gin adds where it was called
    assert not list(ctx.checkpoints_dir.iterdir())


def test_a_quoted_number_in_a_gin_binding_names_the_binding(tmp_path):
    parse_config([], ["train.lr = 'abc'"], finalize=False)
    with pytest.raises(SettingError, match=r"^train.lr='abc' is a str; give a number such as "
                                           r"train.lr=0.001 \(no quotes\)"):
        train(ToyObjective(), make_loader(ToyDataset(n=8), 4), cpu_context(tmp_path))


@pytest.mark.parametrize("setting, value, message", [
    ("batch_size", "16", "data_loader.batch_size='16' is a str; give a whole number such as data_loader.batch_size=16 (no quotes)"),
    ("batch_size", 0, "data_loader.batch_size=0: must be an integer >= 1"),
    ("num_workers", -1, "data_loader.num_workers=-1: must be an integer >= 0"),
    ("num_workers", 1.5, "data_loader.num_workers=1.5 is a float; give a whole number such as data_loader.num_workers=2"),
])
def test_loader_settings_are_refused_by_name(setting, value, message):
    with pytest.raises(SettingError) as refused:
        build_loader(ToyDataset(n=8), **{setting: value})
    assert str(refused.value).splitlines()[0] == message  # gin adds where it was called


def test_optimizer_and_schedule_name_the_train_setting_when_called_directly():
    module = torch.nn.Linear(2, 2)
    with pytest.raises(SettingError, match=r"train.betas=\[0.9\] is a list; give 2 numbers"):
        optim.build_optimizer(module, lr=0.1, betas=[0.9])
    with pytest.raises(SettingError, match="train.weight_decay='0.05' is a str"):
        optim.build_optimizer(module, lr=0.1, weight_decay="0.05")
    optimizer = optim.build_optimizer(module, lr=0.1)
    with pytest.raises(SettingError, match="train.min_lr=-1.0: must be a number >= 0"):
        optim.build_scheduler(optimizer, 10, 2, min_lr=-1.0)


@pytest.mark.parametrize("binding, message", [
    ("experiment.device = 'cdua'", "experiment.device='cdua' is not a device torch knows; did you "
                                   "mean 'cuda'? use 'auto' (CUDA when present), 'cpu', 'cuda' or "
                                   "'cuda:<index>'."),
    ("experiment.device = 0", "experiment.device=0 is an int; give a string such as "
                              "experiment.device='auto' (with quotes)"),
    ("experiment.precision = 16", "experiment.precision=16 is an int; give a string such as "
                                  "experiment.precision='fp32' (with quotes)"),
    ("experiment.precision = 'fp23'", "experiment.precision='fp23': choose one of ['bf16', 'fp16', 'fp32']"),
    ("experiment.seed = '0'", "experiment.seed='0' is a str; give a whole number such as "
                              "experiment.seed=0 (no quotes)"),
    ("experiment.threads = 0", "experiment.threads=0: must be an integer >= 1 (or None)"),
])
def test_experiment_settings_are_refused_before_a_run_directory_exists(tmp_path, binding, message):
    parse_config([], [binding, f"experiment.output_root = '{tmp_path / 'out'}'",
                      "wandb_run.mode = 'disabled'"], finalize=False)
    with pytest.raises(ValueError) as refused:
        exp.experiment(config_name="bad")
    assert str(refused.value).splitlines()[0] == message
    assert not (tmp_path / "out").exists()


# --- run.py: expected errors end with their cause ----------------------------------------------

def _tiny_pretrain_bindings(data: Path, out: Path, workers: int) -> list[str]:
    return [
        "experiment.task = 'pretrain'", "experiment.device = 'cpu'", "experiment.threads = 1",
        f"experiment.output_root = '{out}'", "experiment.name = 'broken'",
        "wandb_run.mode = 'disabled'",
        "pretrain.modality = 'rgb'", "pretrain.visualize_clips = 0", "pretrain.mask_ratio = 0.5",
        "video_vit.embed_dim = 32", "video_vit.depth = 1", "video_vit.num_heads = 2",
        "video_vit.num_frames = 4", "video_vit.img_size = (32, 32)", "video_vit.patch_size = 16",
        "mae.decoder_dim = 16", "mae.decoder_depth = 1",
        f"unlabeled/clip_data.annotations = '{data / 'annotations.json'}'",
        "temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
        "spatial_transform.short_side = None", "spatial_transform.crop_size = (32, 32)",
        "data_loader.batch_size = 2", f"data_loader.num_workers = {workers}",
        "train.epochs = 1", "train.warmup_epochs = 0",
    ]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_missing_frame_ends_the_run_with_its_cause_last_and_the_traceback_in_console_log(
        tmp_path, workers):
    data = tmp_path / "data"
    df.make_dataset(data, videos=("v0", "v1"), num_frames=6, size=(32, 32))
    missing = data / "frames" / "v1" / "000003.jpg"
    missing.unlink()
    out = df.run_py(_tiny_pretrain_bindings(data, tmp_path / "out", workers))
    assert out.returncode == 1, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").glob("*/*_broken")
    lines = out.stderr.strip().splitlines()
    assert lines[-2] == f"run.py: the full traceback is in {run_dir / 'console.log'}"
    assert lines[-1].startswith("run.py: error: clip #") and "video 'v1'" in lines[-1]
    assert "missing files ['000003.jpg']" in lines[-1] and str(missing.parent) in lines[-1]
    assert "Traceback" not in out.stderr and "In call to configurable" not in lines[-1]
    console = (run_dir / "console.log").read_text()
    assert "Traceback (most recent call last)" in console and "BadClipError" in console
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "000003.jpg" in summary["error"]


def test_a_setting_refused_before_the_run_starts_prints_only_its_cause(tmp_path, monkeypatch,
                                                                       capsys):
    run = load_run_py()
    monkeypatch.setattr(sys, "argv", ["run.py"])
    code = run.main(["--gin_param", "experiment.device = 'cdua'", "--gin_param",
                     f"experiment.output_root = '{tmp_path}'"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["run.py: error: experiment.device='cdua' is not a device torch knows; did you "
                   "mean 'cuda'? use 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:<index>'."]


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    run = load_run_py()

    def buggy(**kwargs):
        return None + 1  # a TypeError no input explains

    monkeypatch.setattr(exp, "experiment", buggy)
    monkeypatch.setattr(sys, "argv", ["run.py"])
    with pytest.raises(TypeError, match="unsupported operand"):  # Python prints its traceback
        run.main(["--gin_param", f"experiment.output_root = '{tmp_path}'"])


def _raised(make):
    try:
        make()
    except BaseException as err:  # noqa: BLE001 - the test inspects whatever was raised
        return err
    raise AssertionError("nothing was raised")


def test_expected_errors_are_told_from_bugs():
    run = load_run_py()
    ours = _raised(lambda: exp.resolve_precision("fp16", torch.device("cpu")))  # a raise in mmdistill
    assert run.expected_cause(ours).startswith("experiment.precision='fp16' needs a CUDA device")
    assert run.expected_cause(_raised(lambda: {}["key"])) is None  # a bug
    assert run.expected_cause(_raised(lambda: int("x"))) is None  # raised by Python, not by us
    own_class = BadClipError("video 'v': missing frame file f.jpg")
    assert run.expected_cause(own_class) == "video 'v': missing frame file f.jpg"
    assert run.expected_cause(KeyboardInterrupt()) is None

    @gin.configurable("bad_input_probe")
    def probe():
        exp.resolve_device("cdua")

    through_gin = _raised(probe)  # gin appends "In call to configurable ..." to the message
    assert run.expected_cause(through_gin).endswith("'cuda' or 'cuda:<index>'.")


def test_a_loader_workers_error_is_judged_by_the_traceback_it_carries():
    from torch._utils import ExceptionWrapper

    run = load_run_py()

    def in_worker(make):
        try:
            make()
        except Exception:  # noqa: BLE001 - as torch's worker loop does
            wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
        return _raised(wrapped.reraise)

    bad_clip = in_worker(lambda: exp.resolve_precision("fp16", torch.device("cpu")))
    assert "Original Traceback" in str(bad_clip)
    assert run.expected_cause(bad_clip).startswith("experiment.precision='fp16' needs a CUDA")
    assert run.expected_cause(in_worker(lambda: {}["key"])) is None
