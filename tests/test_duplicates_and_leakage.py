"""Duplicates and leakage (issue 25, class 1): a clip listed twice counts once (with a report), one
clip under two labels is refused with both named, and each training stage first refuses training
lists that hold the evaluation's classes (labelled source) or clips (unlabelled clips), unless
leakage.allow = True."""
import json
import logging

import gin
import pytest

import data_factories as df
from context_factories import cpu_context
from mmdistill.data.annotations import AnnotationError, Clip
from mmdistill.data.clip_identity import deduplicate
from mmdistill.data.dataset import build_clip_dataset
from mmdistill.leakage import LeakageError, check_leakage
from mmdistill.stages import pretrain_stage


@pytest.fixture(autouse=True)
def fresh_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _flat(path, entries):
    path.write_text(json.dumps(entries))
    return path


def test_a_list_whose_entries_are_repeated_counts_each_clip_once(tmp_path, caplog):
    data = df.make_dataset(tmp_path, videos=("v0", "v1", "v2"), labels=("a", "b"), events_per_video=2,
                           num_frames=12, size=(16, 16))
    entries = json.loads(data["annotations"].read_text())
    for entry in entries:
        entry["events"] = entry["events"] * 3  # each event listed three times
    data["annotations"].write_text(json.dumps(entries))
    with caplog.at_level(logging.WARNING, logger="mmdistill.data"):
        dataset = build_clip_dataset(data["annotations"], modalities=["rgb"], mode="eval", labeled=True)
    assert len(dataset) == 6 and len({(c.video, c.start) for c in dataset.clips}) == 6
    assert "12 of 18 clips read the same frames as an earlier entry" in caplog.text


def test_the_frame_rule_decides_what_is_the_same_clip():
    # a start without an end is read from the start: the end a list gives elsewhere does not matter
    same = [Clip("v", start=4, label="a"), Clip("v", start=4, label="a")]
    assert len(deduplicate(same, span=16, centred=True)) == 1
    # windows read centred are the clip at their centre; drawn at random, their window
    windows = [Clip("v", 0, 40, "a"), Clip("v", 2, 38, "a")]
    assert len(deduplicate(windows, span=31, centred=True)) == 1
    assert len(deduplicate(windows, span=31, centred=False)) == 2


def test_one_clip_under_two_labels_is_refused_with_both_named():
    clips = [Clip("v", start=4, label="open"), Clip("w", start=4, label="open"), Clip("v", start=4, label="take")]
    with pytest.raises(AnnotationError, match=r"clip #2 \(video 'v', start 4, label 'take'\) reads the same "
                                              r"frames as clip #0 \(video 'v', start 4, label 'open'\)"):
        deduplicate(clips, span=16, centred=True)


def test_unlabelled_clips_that_are_evaluation_clips_are_refused_unless_allowed(tmp_path):
    test = _flat(tmp_path / "test.json", [{"video": "c1", "start": 0, "label": "a"},
                                          {"video": "c2", "start": 0, "label": "b"}])
    unlabeled = _flat(tmp_path / "unlabeled.json", [{"video": "u1"}, {"video": "c2"}])
    gin.parse_config([f"fewshot_data/clip_data.annotations = '{test}'",
                      f"unlabeled/clip_data.annotations = '{unlabeled}'"])
    with pytest.raises(LeakageError, match=r"distill: 1 of the 2 clips of the unlabelled list .* few-shot "
                                           r"evaluation list .*video 'c2'.*leakage.allow = True"):
        check_leakage("distill")
    _flat(unlabeled, [{"video": "u1"}, {"video": "c2", "start": 40, "end": 60}])  # frames after it
    check_leakage("distill")
    _flat(unlabeled, [{"video": "c2"}])
    gin.parse_config(["leakage.allow = True"])
    check_leakage("distill")


def test_a_labelled_source_holding_test_classes_stops_stage_1_first(tmp_path):
    test = _flat(tmp_path / "test.json", [{"video": "c1", "label": "forehand"},
                                          {"video": "c2", "label": "backhand"}])
    source = _flat(tmp_path / "source.json", [{"video": "s1", "label": "serve"},
                                              {"video": "s2", "label": "forehand"}])
    gin.parse_config([f"fewshot_data/clip_data.annotations = '{test}'",
                      f"source/clip_data.annotations = '{source}'"])
    with pytest.raises(LeakageError, match=r"pretrain: the labelled source list .*source.json holds classes "
                                           r"of the few-shot evaluation list .*test.json: forehand"):
        pretrain_stage(cpu_context(tmp_path), None, source=True, target=False)
