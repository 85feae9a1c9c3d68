"""Episode statistics, defined once so every report states the same formulas.

Conventions (kept from MM-CDFSL's test step so numbers stay comparable):
- `std` is the population standard deviation over episodes (ddof = 0, as `np.std`);
- `se` = std / sqrt(episodes) (MM-CDFSL's `_std_error`, no 1.96 factor);
- `ci95` = 1.96 * se, the half-width of the normal 95% interval that video few-shot papers report.

Over training runs (`summarize_runs`: one value per seed) the episodes' interval says nothing about
how another seed would do, and a handful of seeds is not hundreds of episodes: there `std` is the
sample standard deviation (ddof = 1) and `ci95` uses Student's t with n - 1 degrees of freedom.
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


# Two-sided 95% quantiles of Student's t, t_{0.975}(df), df = 1..30 (standard tables, 3 decimals).
T_95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


def summarize_runs(values) -> Summary:
    """Summary of one value per independent training run (seed): sample std (ddof 1), se = std /
    sqrt(n) and the Student-t 95% half-width (normal beyond 31 runs). Needs two runs or more."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size < 2:
        raise ValueError(f"summarize_runs() needs two runs or more to say how runs vary; got {array.size}")
    std = float(array.std(ddof=1))
    se = std / math.sqrt(array.size)
    quantile = T_95[array.size - 2] if array.size - 1 <= len(T_95) else Z_95
    return Summary(mean=float(array.mean()), std=std, se=se, ci95=quantile * se, n=int(array.size))
