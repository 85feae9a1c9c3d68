"""run.py, held still after one epoch's end so a test can SIGKILL it there (tests/process_kill.py):

    python tests/paused_run.py EPOCH [run.py arguments ...]

The trainer is run.py's, unchanged: this wraps the `train` the stages call so that its
`epoch_end` hook, after the run's own (validation), pauses after EPOCH."""
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]


def main() -> None:
    import mmdistill.stages as stages
    from process_kill import pause_after

    epoch_to_pause = int(sys.argv[1])
    train = stages.train

    def paused_train(objective, loader, ctx, *, epoch_end=None, **kwargs):
        return train(objective, loader, ctx, epoch_end=pause_after(epoch_to_pause, ctx.dir, epoch_end),
                     **kwargs)

    stages.train = paused_train
    sys.argv = [str(ROOT / "run.py"), *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
