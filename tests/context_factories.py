"""A RunContext for tests: CPU, a fresh run dir, and a logger the test can read back."""
from pathlib import Path

from mmdistill.context import RunContext
from mmdistill.tracking import MemoryLogger


def cpu_context(tmp_dir: Path, **overrides) -> RunContext:
    """The context a stage or the loop gets from experiment(), minus W&B and the run-dir naming."""
    tmp_dir = Path(tmp_dir)
    (tmp_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return RunContext(dir=tmp_dir, logger=overrides.pop("logger", MemoryLogger()), **overrides)
