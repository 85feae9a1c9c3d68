"""The 'did distillation help' verdicts (from 95% CIs) and the untrained baseline."""
import json
from types import SimpleNamespace

import pytest
import torch
from ckpt_factories import write_mmdistill_ckpt

from context_factories import TINY_VIT, bind_tiny_fewshot_data, cpu_context
from mmdistill.evaluation import compare_with_baselines, evaluate_stage, verdict, verdict_lines
from mmdistill.models.vit import video_vit


class Report:
    """What the verdict reads of a fewshot Report: settings with mean and ci95."""

    def __init__(self, **settings):
        self.acc = {s: SimpleNamespace(mean=m, ci95=c) for s, (m, c) in settings.items()}
        self.results = [SimpleNamespace(setting=SimpleNamespace(name=s), accuracy=a)
                        for s, a in self.acc.items()]

    def __getitem__(self, name):
        return SimpleNamespace(accuracy=self.acc[name])


@pytest.mark.parametrize("ours, theirs, word", [
    ((31.2, 0.9), (20.1, 0.6), "better"),
    ((20.1, 0.6), (31.2, 0.9), "worse"),
    ((25.0, 1.0), (26.5, 1.0), "overlap"),   # intervals 24-26 and 25.5-27.5 share 25.5-26
    ((25.0, 1.0), (27.0, 1.0), "overlap"),   # touching at 26 is not separated
    ((25.0, 1.0), (27.01, 1.0), "worse"),
])
def test_verdict_is_from_the_intervals(ours, theirs, word):
    assert verdict(*ours, *theirs) == word


def test_verdict_lines_say_it_in_words_for_every_setting_and_model():
    reports = {"trained": Report(**{"5way_1shot": (31.2, 0.9), "5way_5shot": (40.0, 1.0)}),
               "teacher_rgb": Report(**{"5way_1shot": (20.1, 0.6), "5way_5shot": (39.5, 1.0)}),
               "untrained": Report(**{"5way_1shot": (35.0, 1.0), "5way_5shot": (30.0, 1.0)})}
    verdicts = compare_with_baselines(reports)
    assert verdicts == {("5way_1shot", "teacher_rgb"): "better",
                        ("5way_1shot", "untrained"): "worse",
                        ("5way_5shot", "teacher_rgb"): "overlap",
                        ("5way_5shot", "untrained"): "better"}
    text = verdict_lines(reports, verdicts)
    assert ("5way_1shot: trained 31.2 +/- 0.9 vs teacher_rgb 20.1 +/- 0.6: better "
            "(CIs do not overlap)") in text
    assert "5way_5shot: trained 40.0 +/- 1.0 vs teacher_rgb 39.5 +/- 1.0: not distinguishable" in text
    assert "5way_1shot: trained 31.2 +/- 0.9 vs untrained 35.0 +/- 1.0: worse" in text


@pytest.fixture
def trained_and_teacher(tmp_path):
    bind_tiny_fewshot_data(tmp_path / "data", *(f"student/video_vit.{k} = {v!r}" for k, v in TINY_VIT.items()))
    paths = {}
    for name, seed in (("trained", 1), ("teacher_rgb", 2)):
        torch.manual_seed(seed)
        paths[name] = write_mmdistill_ckpt(tmp_path / f"{name}.ckpt",
                                           {"encoder.": video_vit(in_chans=3, **TINY_VIT)})
    return paths


def test_untrained_baseline_is_the_seeded_student_architecture(tmp_path, trained_and_teacher):
    paths = trained_and_teacher
    summaries = [evaluate_stage(cpu_context(tmp_path / f"run{i}"), paths["trained"],
                                baselines={"teacher_rgb": paths["teacher_rgb"]},
                                cache_features=False, untrained=True) for i in range(2)]
    first = summaries[0]
    assert first["evaluated/untrained/checkpoint"].startswith("none (random init, seed")
    assert 0 <= first["untrained/fewshot/2way_1shot/acc"] <= 100
    # Seeded: the same random weights (and numbers) every time, other than the trained ones.
    assert summaries[1]["evaluated/untrained/weights_sha"] == first["evaluated/untrained/weights_sha"]
    assert first["evaluated/untrained/weights_sha"] != first["evaluated/trained/weights_sha"]
    assert first["untrained/fewshot/2way_1shot/acc"] == summaries[1]["untrained/fewshot/2way_1shot/acc"]
    for other in ("untrained", "teacher_rgb"):
        assert first[f"fewshot/2way_1shot/vs_{other}"] in ("better", "overlap", "worse")
    # summary.json-ready: plain JSON values.
    json.dumps(first)


def test_untrained_name_clash_is_refused(tmp_path, trained_and_teacher):
    with pytest.raises(ValueError, match="rename that baseline"):
        evaluate_stage(cpu_context(tmp_path / "run"), trained_and_teacher["trained"],
                       baselines={"untrained": trained_and_teacher["teacher_rgb"]},
                       cache_features=False, untrained=True)
