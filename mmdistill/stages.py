"""The tasks `experiment.task` can name, wired from the stage modules."""
from __future__ import annotations


def register(register_task) -> None:
    pass
