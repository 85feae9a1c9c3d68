"""Episode statistics, defined once so every report states the same formulas.

Conventions (kept from MM-CDFSL's test step so numbers stay comparable):
- `std` is the population standard deviation over episodes (ddof = 0, as `np.std`);
- `se` = std / sqrt(episodes) (MM-CDFSL's `_std_error`, no 1.96 factor);
- `ci95` = 1.96 * se, the half-width of the normal 95% interval that video few-shot papers report.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

STD_DDOF = 0
Z_95 = 1.96


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean and spread of one metric over episodes (same unit as the inputs)."""

    mean: float
    std: float
    se: float
    ci95: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def summarize(values) -> Summary:
    """Summary of per-episode values; needs at least one value."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("summarize() needs at least one episode value; got none")
    std = float(array.std(ddof=STD_DDOF))
    se = std / math.sqrt(array.size)
    return Summary(mean=float(array.mean()), std=std, se=se, ci95=Z_95 * se, n=int(array.size))
