"""Checkpoint files under faults, provoked for real: a disk that fills mid-write, a SIGTERM that
arrives while a checkpoint is written, files cut short (safetensors, zip and legacy .pt/.ckpt, a
DeepSpeed model-states file), and an export onto an existing one."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import ckpt_factories as cf
from mmdistill.ckpt.command import main as ckpt_main
from mmdistill.ckpt.reading import CheckpointError, read_checkpoint
from mmdistill.ckpt.loading import load_pretrained
from mmdistill.models.vit import VideoViT
from mmdistill.ckpt import writing as checkpoint_write
from mmdistill.ckpt.writing import CheckpointWriteError, payload_bytes
from mmdistill.ckpt.format import FORMAT, VERSION, load_checkpoint
from mmdistill.ckpt.writing import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}


def payload(value: float, numel: int = 4) -> dict:
    return {"format": FORMAT, "version": VERSION, "model": {"w": torch.full((numel,), value)},
            "epoch": 0, "global_step": 3, "gin_config": "", "wandb_run_id": None}


# --- a full disk --------------------------------------------------------------------------------

def test_a_full_disk_names_the_file_the_space_needed_and_keeps_the_previous_one(tmp_path,
                                                                               monkeypatch):
    path = save_checkpoint(tmp_path / "last.ckpt", payload(1.0))
    real_open = Path.open

    class FullDisk:  # the file object torch writes into; the disk fills after 1 kB
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            if self.written + len(data) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def open_on_full_disk(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return FullDisk(f) if self.suffix == ".tmp" else f

    monkeypatch.setattr(Path, "open", open_on_full_disk)
    big = payload(2.0, numel=250_000)  # 1 MB of tensor data
    with pytest.raises(CheckpointWriteError) as failed:
        save_checkpoint(path, big)
    message = str(failed.value)
    assert str(path) in message and "the disk is full" in message and "No space left" in message
    assert f"needs about {payload_bytes(big) / 1e6:.1f} MB" in message and "MB are free" in message
    assert "The previous last.ckpt is intact" in message and "last.ckpt.tmp was removed" in message
    assert "experiment.resume=True" in message
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert not list(tmp_path.glob("*.tmp"))


FILE_SIZE_LIMITED_SAVE = """
import resource, signal, sys, torch
from mmdistill.ckpt.writing import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    save_checkpoint(sys.argv[1], {"model": {"w": torch.zeros(1_000_000)}})
except Exception as err:
    print(type(err).__name__, "|", err)
"""


def test_a_real_write_past_a_file_size_limit_is_explained(tmp_path):
    """torch's own failure (`inline_container.cc ... unexpected pos`) in a process whose files
    may not grow past 100 kB: the message says why, what the file needs, and what is kept."""
    path = save_checkpoint(tmp_path / "last.ckpt", payload(1.0))
    out = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMITED_SAVE, str(path)], env=_env(),
                         capture_output=True, text=True, timeout=120)
    name, _, message = out.stdout.partition(" | ")
    assert name == "CheckpointWriteError", out.stdout + out.stderr
    assert str(path) in message and "File too large" in message and "ulimit -f" in message
    assert "needs about 4.0 MB" in message and "The previous last.ckpt is intact" in message
    assert "unexpected pos" not in message
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert not list(tmp_path.glob("*.tmp"))


# --- SIGTERM while a checkpoint is written ----------------------------------------------------

# run.py's main with the toy task; torch.save writes through a file object whose third write
# writes half, stops 0.3 s (the test sends SIGTERM then), and writes the rest. An
# interrupt inside torch's zip writer used to surface as `RuntimeError ... unexpected pos`.
SLOW_SAVE_RUN = """
import importlib.util, sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
import toy_experiment
from mmdistill import experiment as exp
exp.TASKS["toy"] = exp.Task(train=toy_experiment.toy_train, test=None)
marker = Path(sys.argv[1])
real_save = torch.save

class SlowFile:
    def __init__(self, f):
        self.f, self.calls = f, 0
    def write(self, data):
        self.calls += 1
        if self.calls != 3:
            return self.f.write(data)
        half = len(data) // 2
        self.f.write(data[:half])
        marker.touch()
        time.sleep(0.3)
        self.f.write(data[half:])
        return len(data)
    def flush(self):
        return self.f.flush()

torch.save = lambda obj, f, *args, **kwargs: real_save(obj, SlowFile(f), *args, **kwargs)
spec = importlib.util.spec_from_file_location("run_cli", {run_py!r})
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)
sys.exit(run.main([arg for binding in sys.argv[2:] for arg in ("--gin_param", binding)]))
"""


def test_sigterm_during_a_checkpoint_write_ends_interrupted_with_the_checkpoint_whole(tmp_path):
    code = SLOW_SAVE_RUN.format(tests=str(TESTS), run_py=str(ROOT / "run.py"))
    marker = tmp_path / "writing"
    bindings = ["experiment.task = 'toy'", "experiment.device = 'cpu'",
                f"experiment.output_root = '{tmp_path / 'out'}'", "wandb_run.mode = 'disabled'",
                "train.epochs = 2", "train.warmup_epochs = 1", "train.save_ckpt_freq = 1"]
    process = subprocess.Popen([sys.executable, "-c", code, str(marker), *bindings], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # while epoch 0's first checkpoint is half written
    out, _ = process.communicate(timeout=120)
    assert process.returncode != 0, out
    (run_dir,) = (tmp_path / "out").glob("*/*_run")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted", out
    assert "unexpected pos" not in out and "SIGTERM arrived while a checkpoint was written" in out
    folder = run_dir / "checkpoints"
    assert not list(folder.glob("*.tmp"))
    # the write under way finished, and so did last.ckpt of the same epoch; epoch 1 never ran
    assert load_checkpoint(folder / "last.ckpt")["epoch"] == 0
    (named,) = folder.glob("epoch=00-*.ckpt")
    assert load_checkpoint(named)["epoch"] == 0


def test_a_signal_held_during_a_write_reaches_the_previous_handler_afterwards():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with checkpoint_write.deferred_signals():
            signal.raise_signal(signal.SIGTERM)
            assert received == []  # held while the block runs
        assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not None and received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- files cut short -------------------------------------------------------------------------

def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def test_a_truncated_safetensors_file_is_named_as_truncated(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(1000)}, str(path))
    whole = path.stat().st_size
    _truncate(path)
    with pytest.raises(CheckpointError, match=rf"cannot read {path}: the file is truncated "
                                              rf"\({whole // 2} bytes of the {whole} its header"):
        read_checkpoint(path)
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(CheckpointError, match="truncated .5 bytes, shorter than the 8-byte header"):
        read_checkpoint(path)


def test_a_truncated_safetensors_in_a_hugging_face_folder_names_the_file(tmp_path):
    folder = cf.write_hf_dir(tmp_path / "hf", cf.hf_model())
    _truncate(folder / "model.safetensors", 0.9)
    with pytest.raises(CheckpointError, match=r"hf/model.safetensors: the file is truncated"):
        read_checkpoint(folder)


@pytest.mark.parametrize("name, zipped", [("last.ckpt", True), ("model.pt", True),
                                          ("legacy.pth", False)])
@pytest.mark.parametrize("keep", [0.0, 0.03, 0.5, 0.99])
def test_truncated_torch_files_are_named_as_truncated_never_as_untrusted(tmp_path, name, zipped,
                                                                         keep):
    path = tmp_path / name
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 3}, path,
               _use_new_zipfile_serialization=zipped)
    _truncate(path, keep)
    for trust in (False, True):
        with pytest.raises(CheckpointError, match=rf"cannot read {path}: the file is truncated") as e:
            read_checkpoint(path, trust_checkpoint=trust)
        assert "trust_checkpoint" not in str(e.value)


def test_a_truncated_deepspeed_model_states_file_is_named(tmp_path):
    state, _ = cf.distillation_state()
    folder = cf.write_deepspeed_dir(tmp_path / "epoch=49-loss=0.6095", state)
    model_states = folder / "checkpoint" / "mp_rank_00_model_states.pt"
    _truncate(model_states)
    with pytest.raises(CheckpointError, match=rf"cannot read {model_states}: the file is truncated "
                                              r"\(\d+ bytes, and the end of its zip archive"):
        read_checkpoint(folder)


def test_a_file_that_is_no_checkpoint_is_damaged_not_untrusted(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"these are notes, not weights\n" * 20)
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint .its first bytes"):
        read_checkpoint(path)


def test_ckpt_inspect_of_a_truncated_file_prints_the_reason_without_a_traceback(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(1000)}, str(path))
    _truncate(path)
    out = subprocess.run([sys.executable, "-m", "mmdistill.ckpt", "inspect", str(path)],
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: cannot read {path}: the file is truncated ({path.stat().st_size} bytes of the "
        f"{2 * path.stat().st_size} its header lists); the copy or the write that made it did "
        f"not finish. Copy it again, or use another checkpoint."]


# --- export onto an existing export ----------------------------------------------------------

@pytest.mark.parametrize("to, target", [("official", "student.pth"), ("hf", "student_hf")])
def test_export_refuses_to_replace_an_existing_export_without_overwrite(tmp_path, capsys, to,
                                                                        target):
    source = cf.write_mmdistill_ckpt(tmp_path / "last.ckpt", {"student.": cf.tiny_vit(0)})
    out = tmp_path / target
    args = ["export", str(source), "--to", to, str(out), "--prefix", "student."]
    assert ckpt_main(args) == 0
    before = {p: p.read_bytes() for p in [out, *out.glob("*")] if p.is_file()}

    replacement = cf.write_mmdistill_ckpt(tmp_path / "other.ckpt", {"student.": cf.tiny_vit(1)})
    again = ["export", str(replacement), *args[2:]]
    assert ckpt_main(again) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "exists already" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in before} == before  # untouched

    assert ckpt_main([*again, "--overwrite"]) == 0
    after = {p: p.read_bytes() for p in before}
    assert after != before
    reloaded = VideoViT(**cf.TINY)
    load_pretrained(reloaded, out)
    for name, tensor in cf.tiny_vit(1).state_dict().items():  # the replacement's weights
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_export_into_an_existing_empty_folder_needs_no_overwrite(tmp_path):
    source = cf.write_mmdistill_ckpt(tmp_path / "last.ckpt", {"student.": cf.tiny_vit(0)})
    (tmp_path / "empty").mkdir()
    assert ckpt_main(["export", str(source), "--to", "hf", str(tmp_path / "empty"),
                      "--prefix", "student."]) == 0
    assert (tmp_path / "empty" / "model.safetensors").is_file()
