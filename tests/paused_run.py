"""run.py, held still after one epoch's end, or in the middle of an epoch after a number of
optimizer steps, so a test can SIGKILL it there (tests/process_kill.py):

    python tests/paused_run.py EPOCH [run.py arguments ...]
    python tests/paused_run.py step=N [run.py arguments ...]

The trainer is run.py's, unchanged: this wraps the `train` the stages call, either so that its
`epoch_end` hook, after the run's own (validation), pauses after EPOCH, or so that the step it
builds pauses once N optimizer steps are done (mid-epoch when N is not a whole number of epochs)."""
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]


def pause_after_steps(steps: int, run_dir: list) -> None:
    import mmdistill.train.loop as loop
    from process_kill import PAUSED

    class PausingStep(loop.TrainStep):
        done = 0

        def __call__(self, micro_batches):
            result = super().__call__(micro_batches)
            PausingStep.done += 1
            if PausingStep.done == steps:
                (Path(run_dir[0]) / PAUSED).touch()
                time.sleep(600)
            return result

    loop.TrainStep = PausingStep


def main() -> None:
    import mmdistill.stages as stages
    from process_kill import pause_after

    train = stages.train
    where = sys.argv[1]
    if where.startswith("step="):
        run_dir: list = []
        pause_after_steps(int(where.split("=", 1)[1]), run_dir)

        def paused_train(objective, loader, ctx, **kwargs):
            run_dir.append(ctx.dir)
            return train(objective, loader, ctx, **kwargs)
    else:
        epoch_to_pause = int(where)

        def paused_train(objective, loader, ctx, *, epoch_end=None, **kwargs):
            return train(objective, loader, ctx,
                         epoch_end=pause_after(epoch_to_pause, ctx.dir, epoch_end), **kwargs)

    stages.train = paused_train
    sys.argv = [str(ROOT / "run.py"), *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
