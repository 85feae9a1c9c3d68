"""DDP under torchrun: 2 gloo processes on CPU match one process with the same global batch."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "toy_objective.py"
SETTINGS = ["--clips", "32", "--dropout", "0", "train.epochs=2", "train.warmup_epochs=1",
            "train.lr=0.5", "train.scale_lr=False", "train.log_every=2", "train.clip_grad=1.0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_gloo_processes_match_one_process(tmp_path):
    # 2 processes x batch 2 x accumulation 2 (exercises no_sync) = one process x batch 8
    ddp = launch(["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                  f"--master_port={free_port()}", str(SCRIPT), str(tmp_path / "ddp"),
                  "--batch", "2", "train.accum_steps=2", *SETTINGS])
    single = launch([str(SCRIPT), str(tmp_path / "single"), "--batch", "8", *SETTINGS])
    outputs = {name: p.communicate(timeout=180) for name, p in [("ddp", ddp), ("single", single)]}
    assert ddp.returncode == 0, outputs["ddp"][0]
    assert single.returncode == 0, outputs["single"][0]
    assert "world size 2 x per-device batch 2 x accumulation 2 = effective batch 8" in outputs["ddp"][0]

    expected = torch.load(tmp_path / "single" / "final.pt", weights_only=True)
    got = torch.load(tmp_path / "ddp" / "final.pt", weights_only=True)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    saved = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.equal(saved["model"][n], got[n]) for n in got)  # rank 0's checkpoint
    assert saved["rng"]["world_size"] == 2 and len(saved["rng"]["per_rank"]) == 2

    def losses(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["train/loss"]) for r in map(json.loads, lines) if "train/loss" in r]

    ddp_losses, single_losses = losses("ddp"), losses("single")  # rank 0 logs the mean over ranks
    assert [s for s, _ in ddp_losses] == [s for s, _ in single_losses] == [2, 4, 6, 8]
    for (_, a), (_, b) in zip(ddp_losses, single_losses):
        assert abs(a - b) < 1e-5
