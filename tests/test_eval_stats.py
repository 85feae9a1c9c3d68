import math

import numpy as np
import pytest

from mmdistill.eval.stats import summarize


def test_known_inputs_give_population_std_se_and_ci95():
    s = summarize([50.0, 100.0, 50.0, 100.0])
    assert s.mean == 75.0
    assert s.std == 25.0  # ddof=0: sqrt(mean((x - 75)^2)) = 25 (ddof=1 would give 28.87)
    assert s.se == 25.0 / math.sqrt(4) == 12.5
    assert s.ci95 == pytest.approx(1.96 * 12.5)
    assert s.n == 4


def test_matches_numpy_std_like_the_original():
    values = np.random.default_rng(0).uniform(0, 100, size=400)
    s = summarize(values)
    assert s.std == pytest.approx(np.std(values))
    assert s.se == pytest.approx(np.std(values) / np.sqrt(400))


def test_single_episode_has_zero_spread_and_empty_input_is_refused():
    assert summarize([80.0]).std == 0.0
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_runs_use_the_sample_std_and_students_t():
    """Three seeds 1, 2, 3: mean 2, sample std 1, se 1/sqrt(3), half-width t_0.975(2) = 4.303 x se;
    the episode formula would say 1.96 x 0.816 / sqrt(3), less than half as wide."""
    from mmdistill.eval.stats import T_95, summarize_runs
    runs = summarize_runs([1.0, 2.0, 3.0])
    assert (runs.mean, runs.std, runs.n) == (2.0, 1.0, 3)
    assert runs.se == pytest.approx(1 / np.sqrt(3)) and runs.ci95 == pytest.approx(4.303 / np.sqrt(3))
    assert summarize([1.0, 2.0, 3.0]).ci95 < runs.ci95 / 2
    assert summarize_runs([5.0, 7.0]).ci95 == pytest.approx(12.706 * 1.0)  # df 1: std sqrt(2), se 1
    many = summarize_runs(np.arange(40.0))
    assert many.ci95 == pytest.approx(1.96 * many.se)  # beyond the table: normal
    assert len(T_95) == 30 and all(a > b for a, b in zip(T_95, T_95[1:]))
    with pytest.raises(ValueError, match="two runs or more"):
        summarize_runs([3.0])
