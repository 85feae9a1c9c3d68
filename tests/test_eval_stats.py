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
