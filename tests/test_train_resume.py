"""Kill a training process after an epoch (SIGKILL from outside), resume it, and get the
uninterrupted run exactly."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from process_kill import kill_once_paused, saved_epoch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "toy_objective.py"
SETTINGS = ["train.epochs = 4", "train.warmup_epochs = 1", "train.lr = 0.5", "train.log_every = 2",
            "train.save_ckpt_freq = 1", "train.clip_grad = 1.0"]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true"}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), *SETTINGS, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=120)
    return process.returncode, out


def steps(run_dir: Path, key: str) -> list[int]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if key in r]


@pytest.mark.parametrize("workers", [0, 1], ids=["in_process", "worker"])
def test_killed_run_resumes_bit_identical(tmp_path, workers):
    # With a worker, build_loader's loader is asked for the next epoch during the last step of
    # this one (train/loop.py), before the checkpoint: the resumed run must not notice.
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    loader = ("--workers", str(workers))
    runs = [start(whole, *loader), start(broken, "--pause-after-epoch", "1", *loader)]
    kill_once_paused(runs[1], broken.parent, broken.name)
    assert saved_epoch(broken) == 1
    (whole_rc, whole_out), (broken_rc, broken_out) = [finish(p) for p in runs]
    assert whole_rc == 0, whole_out
    assert broken_rc == -signal.SIGKILL, broken_out
    assert not (broken / "final.pt").exists()
    assert steps(broken, "train/epoch_loss")[-1] == 12  # 6 steps/epoch, killed after epoch 1

    # what a crash after the checkpoint may leave behind: steps logged past it, a torn last line
    with (broken / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 14, "train/loss": 1.0}) + "\n" + '{"step": 1')

    rc, out = finish(start(broken, "--resume", *loader))
    assert rc == 0, out
    assert "resumed from" in out and "epoch 1 done, step 12" in out

    expected = torch.load(whole / "final.pt", weights_only=True)
    resumed = torch.load(broken / "final.pt", weights_only=True)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    for key in ("train/loss", "train/epoch_loss"):
        assert steps(broken, key) == steps(whole, key), key
    assert steps(broken, "train/loss") == list(range(2, 25, 2))
    whole_losses = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    broken_losses = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("train/loss") for r in broken_losses] == [r.get("train/loss") for r in whole_losses]
