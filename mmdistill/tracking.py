"""Experiment tracking behind one small interface: W&B for users, memory for tests.

Every scalar also goes to `metrics.jsonl` in the run directory (see `MetricsFile`), so runs can be
compared without W&B.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol


class Logger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def summary(self, values: dict[str, Any]) -> None: ...
    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    def image(self, name: str, path: str | Path, step: int | None = None) -> None: ...
    def finish(self) -> None: ...


class NullLogger:
    """Logs nothing: what non-zero ranks get."""

    def log(self, metrics, step):
        pass

    def summary(self, values):
        pass

    def table(self, name, columns, rows):
        pass

    def image(self, name, path, step=None):
        pass

    def finish(self):
        pass


class MemoryLogger:
    """Keeps everything in lists, for tests to read back."""

    def __init__(self):
        self.history: list[tuple[int, dict[str, float]]] = []
        self.summary_values: dict[str, Any] = {}
        self.tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
        self.images: list[tuple[str, str]] = []
        self.finished = False

    def log(self, metrics, step):
        self.history.append((int(step), dict(metrics)))

    def summary(self, values):
        self.summary_values.update(values)

    def table(self, name, columns, rows):
        self.tables[name] = (list(columns), [list(r) for r in rows])

    def image(self, name, path, step=None):
        self.images.append((name, str(path)))

    def finish(self):
        self.finished = True

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, m[key]) for s, m in self.history if key in m]
