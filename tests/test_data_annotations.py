"""Annotation layouts -> Clip records, and their bad-entry messages."""
from collections import Counter
from pathlib import Path

import gin
import pytest

from data_factories import write_clip_list, write_json
from mmdistill.data.annotations import (AnnotationError, Clip, class_names_of, read_annotations,
                                        read_class_folders, read_clip_list, read_tennis_events)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_EVENTS = SHARED_DATA / "tennis_events_json" / "val.json"
REAL_STROKES = SHARED_DATA / "tennis_strokes"


def test_tennis_events_become_one_clip_per_event(tmp_path):
    path = write_json(tmp_path / "t.json", [
        {"video": "a", "num_frames": 100, "events": [{"frame": 0, "label": "serve"}, {"frame": 40, "label": "lob"}]},
        {"video": "b", "num_frames": 50, "events": []},
        {"video": "c", "events": [{"frame": 7, "label": "serve", "other": "x"}]},
    ])
    clips = read_tennis_events(path)
    assert clips == [Clip("a", 0, None, "serve"), Clip("a", 40, None, "lob"), Clip("c", 7, None, "serve")]
    assert class_names_of(clips) == ["lob", "serve"]
    assert read_tennis_events(path, label_key=None)[0].label is None


def test_tennis_frame_base_shifts_starts(tmp_path):
    path = write_json(tmp_path / "t.json", [{"video": "a", "num_frames": 100, "events": [{"frame": 5, "label": "x"}]}])
    assert read_tennis_events(path, frame_base=1)[0].start == 4
    assert read_annotations(path, label_key="label")[0] == Clip("a", 5, None, "x")


def test_tennis_custom_label_key(tmp_path):
    path = write_json(tmp_path / "t.json", [{"video": "a", "events": [{"frame": 1, "label": "x", "outcome": "in"}]}])
    assert read_tennis_events(path, label_key="outcome")[0].label == "in"


@pytest.mark.parametrize("entries, message", [
    ([{"events": []}], "needs the fields 'video' and 'events'"),
    ([{"video": "a", "events": [{"label": "x"}]}], "needs the field 'frame'"),
    ([{"video": "a", "events": [{"frame": 3}]}], "needs the label field 'label'"),
    ([{"video": "a", "events": [{"frame": "x3", "label": "y"}]}], "must be an integer frame number"),
    ([{"video": "a", "num_frames": 10, "events": [{"frame": 10, "label": "y"}]}], "outside the video's 10 frames"),
])
def test_tennis_bad_entries_are_named(tmp_path, entries, message):
    path = write_json(tmp_path / "bad.json", entries)
    with pytest.raises(AnnotationError, match=message) as info:
        read_tennis_events(path)
    assert "bad.json" in str(info.value)
    assert read_tennis_events(path, on_bad_entry="skip") == []


def test_skip_keeps_good_entries(tmp_path):
    path = write_json(tmp_path / "t.json", [{"video": "a", "events": [{"frame": 1, "label": "x"}, {"label": "y"}]}])
    assert read_tennis_events(path, on_bad_entry="skip") == [Clip("a", 1, None, "x")]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_flat_list_round_trip(tmp_path, suffix):
    rows = [{"video": "a", "start": 3, "end": 20, "label": "x"}, {"video": "b"}, {"video": "c", "label": "7"}]
    path = write_clip_list(tmp_path / f"list{suffix}", rows)
    assert read_annotations(path) == [Clip("a", 3, 20, "x"), Clip("b"), Clip("c", None, None, "7")]


@pytest.mark.parametrize("rows, message", [
    ([{"start": 3}], "needs the field 'video'"),
    ([{"video": "a", "start": 5, "end": 5}], "must be after start"),
    ([{"video": "a", "start": 2.5}], "must be an integer frame number"),
])
def test_flat_list_bad_entries(tmp_path, rows, message):
    path = write_clip_list(tmp_path / "bad.json", rows)
    with pytest.raises(AnnotationError, match=message):
        read_clip_list(path)


def test_csv_without_video_column_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("name,label\na,b\n")
    with pytest.raises(AnnotationError, match="'video' column"):
        read_annotations(path)


def test_class_folders(tmp_path):
    for name in ["walk/w2.mp4", "walk/w10.mp4", "walk/w1.mp4", "run/r1.avi", "run/notes.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    clips = read_annotations(tmp_path)
    assert [c.video for c in clips] == ["run/r1", "walk/w1", "walk/w2", "walk/w10"]
    assert [c.label for c in clips] == ["run", "walk", "walk", "walk"]


def test_missing_annotation_path(tmp_path):
    with pytest.raises(AnnotationError, match="does not exist"):
        read_annotations(tmp_path / "nope.json")


def test_real_tennis_events_file():
    clips = read_annotations(REAL_EVENTS)
    assert len(clips) == 6994
    assert len({c.video for c in clips}) == 1883
    assert len(class_names_of(clips)) == 638
    assert min(c.start for c in clips) == 0
    assert clips[0] == Clip("20210909-W-US_Open-SF-Aryna_Sabalenka-Leylah_Fernandez_170943_171285", 84, None,
                            "far_deuce_serve_-_-_T_-_in")


def test_real_tennis_strokes_folders():
    clips = read_class_folders(REAL_STROKES)
    counts = Counter(c.label for c in clips)
    assert len(clips) == 280
    assert counts == {name: 40 for name in ["b_slice", "b_volley", "backhand", "f_volley", "forehand", "serve", "smash"]}
    assert clips[0].video == "b_slice/b_slice1" and clips[1].video == "b_slice/b_slice2"


# --- every entry must match the detected layout; unread and misspelt keys --------------------

def _tennis_videos(count=16, events=2):
    return [{"video": f"v{i}", "fps": 25, "num_frames": 100,
             "events": [{"frame": 10 * e, "label": f"c{e}"} for e in range(events)]} for i in range(count)]


@pytest.mark.parametrize("on_bad_entry", ["error", "skip"])
def test_events_misspelt_in_first_entry_refuses_the_file(tmp_path, on_bad_entry):
    videos = _tennis_videos()
    videos[0]["evnets"] = videos[0].pop("events")
    path = write_json(tmp_path / "tennis.json", videos)
    assert len(read_annotations(write_json(tmp_path / "ok.json", _tennis_videos()))) == 32
    with pytest.raises(AnnotationError, match=r"tennis.json entry #0: entry #1 carries 'events'.*"
                                              r"its key 'evnets' looks like a misspelt 'events'.*'video' and 'events'"):
        read_annotations(path, on_bad_entry=on_bad_entry)


def test_entry_without_events_among_tennis_entries_names_its_keys(tmp_path):
    videos = _tennis_videos(3)
    del videos[2]["events"]
    with pytest.raises(AnnotationError, match=r"entry #2: entry #0 carries 'events'.*its keys: fps, num_frames, video"):
        read_annotations(write_json(tmp_path / "t.json", videos))


def test_events_misspelt_in_every_entry_is_not_read_as_a_flat_list(tmp_path):
    videos = _tennis_videos()
    for video in videos:
        video["evnets"] = video.pop("events")
    with pytest.raises(AnnotationError, match=r"t.json entry #0: key 'evnets' looks like a misspelt 'events', "
                                              r"which this entry lacks; rename it"):
        read_annotations(write_json(tmp_path / "t.json", videos))


@pytest.mark.parametrize("typo, meant", [("strat", "start"), ("ned", None), ("lable", "label")])
def test_misspelt_optional_flat_key_is_refused(tmp_path, typo, meant):
    path = write_json(tmp_path / "l.json", [{"video": "a", typo: 3}])
    if meant is None:  # not close enough to any key: only reported
        assert read_annotations(path) == [Clip("a")]
        return
    with pytest.raises(AnnotationError, match=f"entry #0: key '{typo}' looks like a misspelt '{meant}'"):
        read_annotations(path)
    assert read_annotations(path, ignored_keys=[typo]) == [Clip("a")]


def test_unread_keys_are_warned_once_per_file(tmp_path, caplog):
    path = write_json(tmp_path / "l.json", [{"video": "a", "fps": 25, "notes": "x"}, {"video": "b", "fps": 30}])
    with caplog.at_level("WARNING", logger="mmdistill.data"):
        read_annotations(path)
    warnings = [r.getMessage() for r in caplog.records if "no clip field reads" in r.getMessage()]
    assert len(warnings) == 1 and "l.json" in warnings[0] and "fps (2), notes (1)" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mmdistill.data"):
        read_annotations(path, ignored_keys=["fps", "notes"])
        read_annotations(REAL_EVENTS)  # F3Set's match-state keys are known, not warned about
    assert not caplog.records


def test_unread_tennis_event_keys_are_named(tmp_path, caplog):
    path = write_json(tmp_path / "t.json", [{"video": "a", "events": [{"frame": 1, "label": "x", "spin": "top"}]}])
    with caplog.at_level("WARNING", logger="mmdistill.data"):
        read_annotations(path)
    assert "events[].spin (1)" in caplog.text


# --- a labelled reader names why it found no labels ------------------------------------------

def test_required_labels_missing_from_every_entry_names_the_key(tmp_path):
    path = write_json(tmp_path / "fewshot.json", [{"video": "a", "action_name": "x"}, {"video": "b", "action_name": "y"}])
    assert class_names_of(read_annotations(path)) == []  # an unlabelled list, where that is allowed
    with pytest.raises(AnnotationError, match=r"fewshot.json: labelled clips are needed here, but no entry of 2 has "
                                              r"the label key 'label' \(their keys: action_name, video\).*label_key"):
        read_annotations(path, require_labels=True)
    assert class_names_of(read_annotations(path, label_key="action_name", require_labels=True)) == ["x", "y"]
    with pytest.raises(AnnotationError, match="but clip_annotations.label_key = None"):
        read_annotations(path, label_key=None, require_labels=True)


def test_required_labels_missing_from_one_entry_names_it(tmp_path):
    path = write_json(tmp_path / "f.json", [{"video": "a", "label": "x"}, {"video": "b"}])
    with pytest.raises(AnnotationError, match=r"f.json entry #1: needs the label field 'label'"):
        read_annotations(path, require_labels=True)


def test_required_labels_in_tennis_events(tmp_path):
    path = write_json(tmp_path / "t.json", [{"video": "a", "events": [{"frame": 1, "outcome": "in"}]}])
    with pytest.raises(AnnotationError, match=r"no event of 1 has the label key 'label' \(their keys: frame, outcome\)"):
        read_annotations(path, require_labels=True, on_bad_entry="skip")


def test_labelled_dataset_names_the_missing_label_key(tmp_path):
    from mmdistill.data.dataset import build_clip_dataset

    path = write_json(tmp_path / "fewshot.json", [{"video": "a", "verb": "x"}])
    with pytest.raises(AnnotationError, match="no entry of 1 has the label key 'label'"):
        build_clip_dataset(path, modalities=["rgb"], labeled=True)


# --- field mapping: MM-CDFSL's four schemas, read as they are --------------------------------
# Samples with the key names and value types of masashi-hatano/MM-CDFSL's annotation files
# (cdfsl/source/ego4d/annotations/ego4d_val.json, cdfsl/target/epic/annotations/
# epic-55_unlabel.json, cdfsl/target/{meccano,wear}/annotations/*_{unlabel,val}.json).

GIN_BASE = Path(__file__).resolve().parents[1] / "gin" / "base"

EGO4D = {"version": 1.0, "date": 231002, "description": "Ego4d ...", "split": "val", "clips": [
    {"uid": "2285_0002837", "video_id": "2285", "frame": 2837, "clip_id": 1965, "clip_uid": "cc6c", "clip_frame": 2837,
     "verb": "pack", "noun": "plant", "verb_label": 36, "noun_label": 53, "box": [403.7, 2.41, 1250.4, 630.2],
     "time_to_contact": 1.0},
    {"uid": "f522_0009754", "video_id": "f522", "frame": 9754, "clip_id": 2564, "clip_uid": "4072", "clip_frame": 995,
     "verb": "move_(transfer,_pass,_exchange)", "noun": "wood_(fiber)", "verb_label": 33, "noun_label": 85,
     "box": [56.4, 461.3, 624.1, 910.3], "time_to_contact": 0.7}]}
EPIC_UNLABEL = {"version": 1.0, "date": 231003, "description": "EPIC-55 ...", "split": "train (unlabel)", "clips": [
    {"uid": "1", "participant_id": "P01", "video_id": "P01_01", "start_timestamp": "00:00:04.37",
     "stop_timestamp": "00:00:06.17", "start_frame": "262", "stop_frame": "370"},
    {"uid": "7", "participant_id": "P01", "video_id": "P01_01", "start_timestamp": "00:00:21.91",
     "stop_timestamp": "00:00:23.33", "start_frame": "1314", "stop_frame": "1399"}]}
MECCANO_VAL = {"version": 1.0, "date": 231020, "description": "MECCANO ...", "split": "val", "num_actions": 40,
               "clips": [{"video_id": "0001", "action_id": 0, "action_name": "check_booklet", "start_frame": 10,
                          "end_frame": 52, "action_id_internal": 9},
                         {"video_id": "0001", "action_id": 12, "action_name": "take_red_perforated_bar",
                          "start_frame": 5317, "end_frame": 5351, "action_id_internal": 37}]}
MECCANO_UNLABEL = {"version": 1.0, "date": 231020, "description": "MECCANO ...", "split": "train (unlabel)",
                   "clips": [{"video_id": "0001", "start_frame": 5775, "end_frame": 5782},
                             {"video_id": "0002", "start_frame": 4060, "end_frame": 4070}]}
WEAR_VAL = {"version": 1.0, "date": 240123, "description": "WEAR ...", "split": "val", "num_actions": 15, "clips": [
    {"video_id": "sbj_0", "label": "jogging", "label_id": 0, "start_frame": 55, "label_id_internal": 0},
    {"video_id": "sbj_0", "label": "stretching (triceps)", "label_id": 5, "start_frame": 15618,
     "label_id_internal": 1}]}
WEAR_UNLABEL = {"version": 1.0, "date": 240123, "description": "WEAR ...", "split": "train (unlabel)",
                "clips": [{"video_id": "sbj_0", "start_frame": 39040}, {"video_id": "sbj_1", "start_frame": 32700}]}


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("schema, data, expected", [
    ("ego4d", EGO4D, [Clip("cc6c", 2836, None, "36/53"), Clip("4072", 994, None, "33/85")]),
    ("epic", EPIC_UNLABEL, [Clip("P01/P01_01", 261), Clip("P01/P01_01", 1313)]),
    ("meccano", MECCANO_VAL, [Clip("0001", 9, None, "check_booklet"), Clip("0001", 5316, None, "take_red_perforated_bar")]),
    ("meccano", MECCANO_UNLABEL, [Clip("0001", 5774), Clip("0002", 4059)]),
    ("wear", WEAR_VAL, [Clip("sbj_0", 54, None, "jogging"), Clip("sbj_0", 15617, None, "stretching (triceps)")]),
    ("wear", WEAR_UNLABEL, [Clip("sbj_0", 39039), Clip("sbj_1", 32699)]),
])
def test_mmcdfsl_schemas_read_through_their_gin_mapping(tmp_path, caplog, clean_gin, schema, data, expected):
    gin.parse_config_file(str(GIN_BASE / f"mmcdfsl_annotations_{schema}.gin"))
    path = write_json(tmp_path / f"{schema}.json", data)
    with caplog.at_level("WARNING", logger="mmdistill.data"):
        assert read_annotations(path) == expected
    assert not caplog.records  # every key of the schema is either read or known to be unused


def test_mmcdfsl_labelled_list_and_missing_keys(tmp_path, clean_gin):
    gin.parse_config_file(str(GIN_BASE / "mmcdfsl_annotations_meccano.gin"))
    assert class_names_of(read_annotations(write_json(tmp_path / "v.json", MECCANO_VAL), require_labels=True)) == [
        "check_booklet", "take_red_perforated_bar"]
    broken = {**MECCANO_VAL, "clips": [MECCANO_VAL["clips"][0], {"action_name": "x", "start_frame": 3}]}
    with pytest.raises(AnnotationError, match=r"b.json entry #1: needs the field 'video_id' \(clip_annotations.video_key"):
        read_annotations(write_json(tmp_path / "b.json", broken))
    with pytest.raises(AnnotationError, match=r"entry #0: 'start_frame' must be an integer frame number, got 'x12'"):
        read_annotations(write_json(tmp_path / "s.json", {"clips": [{"video_id": "1", "start_frame": "x12"}]}))


def test_multi_key_label_needs_every_key(tmp_path, clean_gin):
    gin.parse_config_file(str(GIN_BASE / "mmcdfsl_annotations_ego4d.gin"))
    clip = {key: value for key, value in EGO4D["clips"][0].items() if key != "noun_label"}
    with pytest.raises(AnnotationError, match=r"entry #0: the label is made of 'verb_label' \+ 'noun_label', "
                                              r"but 'noun_label' is missing"):
        read_annotations(write_json(tmp_path / "e.json", {"clips": [clip]}))


def test_entries_under_a_key_of_a_json_object(tmp_path):
    path = write_json(tmp_path / "o.json", {"version": 1.0, "clips": [{"video": "a", "start": 2}]})
    with pytest.raises(AnnotationError, match=r"o.json: the file is a JSON object with keys \['clips', 'version'\].*"
                                              r"clip_annotations.entries_key = 'clips'"):
        read_annotations(path)
    assert read_annotations(path, entries_key="clips") == [Clip("a", 2)]
    with pytest.raises(AnnotationError, match="no key 'items'"):
        read_annotations(path, entries_key="items")
    with pytest.raises(AnnotationError, match="but the file is a JSON list"):
        read_annotations(write_json(tmp_path / "l.json", [{"video": "a"}]), entries_key="clips")


def test_field_mapping_by_keyword(tmp_path):
    path = write_clip_list(tmp_path / "m.json", [{"pid": "P01", "vid": "P01_01", "s": "5", "e": 9, "verb": "cut",
                                                 "noun": "onion"}])
    clips = read_annotations(path, video_key=["pid", "vid"], start_key="s", end_key="e", label_key=["verb", "noun"])
    assert clips == [Clip("P01/P01_01", 5, 9, "cut/onion")]
    with pytest.raises(ValueError, match="video_key cannot be None"):
        read_annotations(path, video_key=None)
