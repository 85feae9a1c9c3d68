"""gin/tennis_strokes/evaluate_slice.gin on the two test slices (clips 21-30, 31-40; 10 clips per
stroke) with the reviewed recordings of data/tennis_strokes_groups.json: its standard settings can
be drawn on both slices, and a recording-disjoint twin a slice cannot draw is reported as not
evaluated with the groups per class, never dropped or raised."""
import dataclasses
import importlib.util
from pathlib import Path

import gin
import pytest
import torch

from mmdistill.config import parse_config
from mmdistill.data.groups import clip_groups
from mmdistill.eval.features import POOLED, FeatureBank
from mmdistill.eval.fewshot import FewShotSetting, evaluate

ROOT = Path(__file__).resolve().parent.parent
STROKES = ["b_slice", "b_volley", "backhand", "f_volley", "forehand"]


def _slice_settings() -> list[FewShotSetting]:
    spec = importlib.util.spec_from_file_location("run_cli_module", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.import_configurables()
    gin.clear_config()
    try:
        parse_config([ROOT / "gin/tennis_strokes/evaluate_slice.gin"],
                     ["EVAL_CLIPS = '.cache/tennis_strokes/source_split/test_31-40.json'"],
                     finalize=False)
        assert gin.query_parameter("fewshot.groups_file") == "data/tennis_strokes_groups.json"
        return [FewShotSetting.coerce(s) for s in gin.query_parameter("fewshot.settings")]
    finally:
        gin.clear_config()


def _slice_report(first: int, last: int, settings):
    videos = [f"{s}/{s}{n}" for s in STROKES for n in range(first, last + 1)]
    labels = torch.arange(len(STROKES)).repeat_interleave(last - first + 1)
    features = torch.randn(len(videos), 8, generator=torch.Generator().manual_seed(0))
    bank = FeatureBank(labels, STROKES, {POOLED: features}, torch.arange(len(videos)))
    groups = clip_groups(videos, None, ROOT / "data/tennis_strokes_groups.json")
    few = [dataclasses.replace(s, episodes=3) for s in settings]  # drawability, not accuracy
    return evaluate(bank, few, classifier="centroid", groups=groups)


@pytest.fixture(scope="module")
def settings():
    return _slice_settings()


def test_the_slice_settings_are_the_protocol_with_five_queries(settings):
    assert [(s.n_way, s.k_shot, s.q_query, s.episodes, s.group_disjoint) for s in settings] == \
        [(5, 1, 5, 400, False), (5, 5, 5, 250, False)]


def test_clips_21_30_give_standard_episodes_and_say_why_no_disjoint_one(settings):
    report = _slice_report(21, 30, settings)
    assert [r.setting.name for r in report.results] == ["5way_1shot", "5way_5shot"]
    assert set(report.not_evaluated) == {"5way_1shot_disjoint", "5way_5shot_disjoint"}
    assert report.groups_per_class["backhand"] == 1  # backhand 21-30 is one recording
    assert "'backhand': 1" in report.not_evaluated["5way_1shot_disjoint"]


def test_clips_31_40_give_1shot_disjoint_but_not_5shot_disjoint(settings):
    report = _slice_report(31, 40, settings)
    assert [r.setting.name for r in report.results] == ["5way_1shot", "5way_5shot",
                                                         "5way_1shot_disjoint"]
    assert list(report.not_evaluated) == ["5way_5shot_disjoint"]
    assert "only 1 qualify" in report.not_evaluated["5way_5shot_disjoint"]
