"""Checkpoint files: atomic writes, safe loading, RNG round trips, metrics.jsonl truncation."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdistill.train import state

ROOT = Path(__file__).resolve().parent.parent


def payload(value: float) -> dict:
    return {"format": state.FORMAT, "version": state.VERSION, "model": {"w": torch.full((4,), value)},
            "epoch": 0, "global_step": 3, "gin_config": "train.lr = 0.1", "wandb_run_id": None}


def test_checkpoint_name_follows_the_original():
    assert state.checkpoint_name(4, 0.12344) == "epoch=04-train_loss=0.1234.ckpt"
    assert state.checkpoint_name(12, float("nan")) == "epoch=12-train_loss=nan.ckpt"


def test_round_trip_is_weights_only_safe(tmp_path):
    path = state.save_checkpoint(tmp_path / "last.ckpt", {**payload(1.0), "rng": state.capture_rng()})
    raw = torch.load(path, weights_only=True)  # would raise on any pickled object
    assert torch.equal(raw["model"]["w"], torch.ones(4))
    assert state.load_checkpoint(path)["global_step"] == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_write_that_fails_midway_keeps_the_previous_file(tmp_path, monkeypatch):
    path = state.save_checkpoint(tmp_path / "last.ckpt", payload(1.0))

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(state.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        state.save_checkpoint(path, payload(2.0))
    assert torch.equal(state.load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert not list(tmp_path.glob("*.tmp"))


def test_process_killed_midway_keeps_the_previous_file(tmp_path):
    path = state.save_checkpoint(tmp_path / "last.ckpt", payload(1.0))
    code = (
        "import os, signal, torch\n"
        "from mmdistill.train import state\n"
        "def killed(obj, f):\n"
        "    f.write(b'PK half a file'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "state.torch.save = killed\n"
        f"state.save_checkpoint({str(path)!r}, {{'model': {{'w': torch.zeros(4)}}}})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    assert (tmp_path / "last.ckpt.tmp").exists()  # the torn write is in the temporary file only
    assert torch.equal(state.load_checkpoint(path)["model"]["w"], torch.ones(4))
    state.save_checkpoint(path, payload(3.0))  # the next save replaces the stale temporary file
    assert torch.equal(state.load_checkpoint(path)["model"]["w"], torch.full((4,), 3.0))


def test_load_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        state.load_checkpoint(tmp_path / "nope.ckpt")
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="damaged.ckpt.*last.ckpt"):
        state.load_checkpoint(damaged)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pth is not an mmdistill"):
        state.load_checkpoint(foreign)


def test_rng_states_round_trip_through_a_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    saved = state.capture_rng()
    state.save_checkpoint(tmp_path / "rng.ckpt", {**payload(0.0), "rng": saved})
    expected = (torch.rand(3), np.random.standard_normal(3), [random.random(), random.gauss(0, 1)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    state.restore_rng(state.load_checkpoint(tmp_path / "rng.ckpt")["rng"])
    again = (torch.rand(3), np.random.standard_normal(3), [random.random(), random.gauss(0, 1)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_prune_keeps_the_newest_named_checkpoints(tmp_path):
    for epoch in (4, 9, 14, 19):
        (tmp_path / state.checkpoint_name(epoch, 0.5)).write_bytes(b"x")
    (tmp_path / "last.ckpt").write_bytes(b"x")
    state.prune_checkpoints(tmp_path, keep_last_k=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch=14-train_loss=0.5000.ckpt", "epoch=19-train_loss=0.5000.ckpt", "last.ckpt"]
    state.prune_checkpoints(tmp_path, keep_last_k=None)
    assert len(list(tmp_path.iterdir())) == 3
    with pytest.raises(ValueError, match="keep_last_k"):
        state.prune_checkpoints(tmp_path, keep_last_k=0)


def test_truncate_metrics_drops_later_steps_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 2, "a": 1}, {"note": "no step"}, {"step": 4, "a": 2}, {"step": 6, "a": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 8, "a"')
    assert state.truncate_metrics(path, max_step=4) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]
    assert state.truncate_metrics(path, max_step=4) == 0
    assert state.truncate_metrics(tmp_path / "absent.jsonl", 4) == 0


def test_truncate_metrics_refuses_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\ngarbage\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2"):
        state.truncate_metrics(path, 5)
