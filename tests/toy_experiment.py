"""The toy objective as a whole experiment, in a process of its own: the real `experiment()`
(run directory, its lock, resume, metrics.jsonl, W&B) around the real training loop.

    PYTHONPATH=. python tests/toy_experiment.py [gin bindings ...]

`toy_task.pause_after_epoch` holds the run still after that epoch's checkpoint (writing
`<run dir>/paused`), so a test can SIGKILL it there (tests/process_kill.py).
`toy_task.wait_for` names a file the training stage waits for (at most 60 s) before it trains,
so a test can keep a run in progress, owning its run directory, while it starts another process.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import gin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_objective import ToyDataset, ToyObjective, make_loader  # noqa: E402


@gin.configurable("toy_task")
def toy_train(ctx, resume_from, wait_for: str | None = None, clips: int = 16, batch: int = 4,
              pause_after_epoch: int | None = None):
    from mmdistill.train.loop import train
    from process_kill import pause_after

    if wait_for:
        deadline = time.monotonic() + 60
        while not Path(wait_for).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    objective = ToyObjective()
    loader = make_loader(ToyDataset(n=clips), batch, ctx.world_size, ctx.rank, seed=ctx.seed)
    epoch_end = None
    if pause_after_epoch is not None and ctx.is_main:  # held still there for the test to SIGKILL
        epoch_end = pause_after(pause_after_epoch, ctx.dir)
    train(objective, loader, ctx, resume_from=resume_from, epoch_end=epoch_end)
    return ctx.checkpoints_dir / "last.ckpt"


def main(argv: list[str]) -> None:
    import torch

    from mmdistill import experiment as exp
    from mmdistill.config import parse_config

    torch.set_num_threads(1)
    exp.TASKS["toy"] = exp.Task(train=toy_train, test=None)
    # The pause and wait are how a test drives the run, not how its weights are made: a resume
    # may change them (mmdistill/train/resume_config.py).
    parse_config([], ["experiment.task = 'toy'", "experiment.device = 'cpu'",
                      "train.resume_may_change = ['train.epochs', 'toy_task.pause_after_epoch', "
                      "'toy_task.wait_for']", *argv])
    exp.experiment(config_name="toy", argv=[sys.argv[0], *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
