"""A tiny objective and dataset with the distillation contracts, for testing the loop alone.

Run as a script it trains in a fresh process (the kill-and-resume test needs a real process
to kill):  PYTHONPATH=. python tests/toy_objective.py RUN_DIR [--resume] [gin bindings ...]
`--pause-after-epoch E` holds the process still after epoch E's checkpoint (the toy's epochs
take milliseconds), so the test's SIGKILL from outside (tests/process_kill.py) lands there.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

DIM, HIDDEN = 8, 16


class ToyDataset(Dataset):
    """Fixed content per index plus noise drawn from (seed, epoch, index), like ClipDataset."""

    def __init__(self, n: int = 32, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> dict:
        if isinstance(index, tuple):  # build_loader's EpochTaggedSampler: (epoch, index)
            self.epoch, index = index
        content = np.random.default_rng((self.seed, index)).standard_normal(DIM)
        noise = np.random.default_rng((self.seed, self.epoch, index)).standard_normal(DIM)
        x = torch.tensor(content + 0.1 * noise, dtype=torch.float32)
        return {"x": x, "video": f"clip{index}", "index": index}


def make_loader(dataset: Dataset, batch_size: int, world_size: int = 1, rank: int = 0,
                seed: int = 0, workers: int = 0) -> DataLoader:
    if workers:  # the project's loader: persistent workers, epoch-tagged indices
        from mmdistill.data.dataset import build_loader
        return build_loader(dataset, batch_size=batch_size, num_workers=workers, seed=seed,
                            rank=rank, world_size=world_size, drop_last=False)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)


class ToyStudent(nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.proj = nn.Linear(DIM, HIDDEN)
        self.pos = nn.Parameter(torch.zeros(1, HIDDEN))  # 2-D: excluded from decay only by name
        self.norm = nn.LayerNorm(HIDDEN)
        self.drop = nn.Dropout(dropout)

    def no_weight_decay(self):
        return {"pos"}

    def forward(self, x):
        return self.drop(F.gelu(self.norm(self.proj(x) + self.pos)))


class ToyObjective(nn.Module):
    """A frozen 'teacher' gives targets; a student and two heads learn them (loss_a + loss_b).

    `nonfinite_calls`: forward call numbers (0-based) whose loss is made NaN, to test the guard.
    """

    def __init__(self, dropout: float = 0.0, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.teacher = nn.Linear(DIM, HIDDEN).requires_grad_(False)
            self.student = ToyStudent(dropout)
            self.heads = nn.ModuleDict({"a": nn.Linear(HIDDEN, HIDDEN), "b": nn.Linear(HIDDEN, HIDDEN)})
        self.nonfinite_calls: set[int] = set()
        self.calls = 0

    def trainable_modules(self) -> nn.Module:
        return nn.ModuleDict({"student": self.student, "heads": self.heads})

    def arch(self) -> dict:
        return {"student.": {"dim": DIM, "hidden": HIDDEN}}

    def forward(self, batch):
        x = batch["x"]
        with torch.no_grad():
            target = self.teacher(x)
        features = self.student(x)
        loss_a = F.mse_loss(self.heads["a"](features).float(), target.float())
        loss_b = F.mse_loss(self.heads["b"](features).float(), target.tanh().float())
        loss = loss_a + loss_b
        if self.calls in self.nonfinite_calls:
            loss = loss * float("nan")
        self.calls += 1
        return {"loss": loss, "loss_a": loss_a, "loss_b": loss_b}


def main(argv: list[str]) -> None:
    """Train the toy in RUN_DIR as run.py would (metrics.jsonl, torchrun-aware); rank 0 writes
    the final trainable weights to RUN_DIR/final.pt."""
    import argparse

    import gin

    from mmdistill.context import RunContext
    from mmdistill.tracking import MetricsFile, NullLogger
    from mmdistill.train import distributed, training_checkpoint
    from mmdistill.train.loop import train

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("bindings", nargs="*", help="gin bindings for train.*")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--pause-after-epoch", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_intermixed_args(argv)
    gin.parse_config(args.bindings)
    torch.set_num_threads(1)
    rank, world_size, _ = distributed.init_distributed()
    torch.manual_seed(rank)
    run_dir = args.run_dir
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    logger = MetricsFile(run_dir / "metrics.jsonl") if rank == 0 else NullLogger()
    ctx = RunContext(dir=run_dir, logger=logger, seed=0, rank=rank, world_size=world_size,
                     gin_config=gin.operative_config_str)
    resume_from = None
    if args.resume:
        resume_from = ctx.checkpoints_dir / training_checkpoint.LAST
        if rank == 0:
            MetricsFile(run_dir / "metrics.jsonl").truncate_after(
                training_checkpoint.step_done(resume_from))
    objective = ToyObjective(dropout=args.dropout)
    loader = make_loader(ToyDataset(n=args.clips), args.batch, world_size, rank,
                         workers=args.workers)
    epoch_end = None
    if args.pause_after_epoch is not None:
        from process_kill import pause_after

        epoch_end = pause_after(args.pause_after_epoch, run_dir)
    train(objective, loader, ctx, resume_from=resume_from, epoch_end=epoch_end)
    if rank == 0:
        torch.save(objective.trainable_modules().state_dict(), run_dir / "final.pt")
    distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
