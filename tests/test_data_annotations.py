"""Annotation layouts -> Clip records, and their bad-entry messages."""
from collections import Counter
from pathlib import Path

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
