"""`prepare annotations`: lists that the project's annotation reader reads back as written."""
import json
from pathlib import Path

import pytest

from mmdistill.prepare.__main__ import main
from mmdistill.prepare.annotations import prepare_annotations, split_classes
from mmdistill.prepare.common import OutputExists, PrepareError

annotations = pytest.importorskip("mmdistill.data.annotations", reason="the project's annotation reader")

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis_strokes"
pytestmark = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"real clips not found at {CLIPS}")
CLASSES = ("b_volley", "serve", "smash", "forehand")


@pytest.fixture
def videos(tmp_path) -> Path:
    """Two real clips per class (links), plus a file that is not a video."""
    root = tmp_path / "videos"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for number in (2, 10):
            (root / name / f"{name}{number}.mp4").symlink_to(CLIPS / name / f"{name}{number}.mp4")
    (root / "serve" / "notes.txt").write_text("not a video")
    return root


def test_tennis_lists_round_trip_through_the_reader(videos, tmp_path):
    out = tmp_path / "lists"
    report = prepare_annotations(videos, out, progress=False)
    assert report.clips_per_class == {name: 2 for name in sorted(CLASSES)}
    clips = annotations.read_annotations(out / "labelled.json")
    assert [(c.video, c.label, c.start) for c in clips[:2]] == [
        ("b_volley/b_volley2", "b_volley", 0), ("b_volley/b_volley10", "b_volley", 0)]
    assert len(clips) == 8 and annotations.class_names_of(clips) == sorted(CLASSES)
    entry = json.loads((out / "labelled.json").read_text())[2]
    assert entry["video"] == "forehand/forehand2" and entry["num_frames"] > 50
    assert (entry["height"], entry["width"], entry["fps"]) == (240, 426, 30.0)
    unlabeled = annotations.read_annotations(out / "unlabeled.json", label_key=None)
    assert sorted(c.video for c in unlabeled) == sorted(c.video for c in clips)
    assert all(c.label is None for c in unlabeled)
    assert "label" not in (out / "unlabeled.json").read_text()


@pytest.mark.parametrize("fmt, ext", [("flat", ".json"), ("csv", ".csv")])
def test_flat_lists_round_trip_without_a_start(videos, tmp_path, fmt, ext):
    prepare_annotations(videos, tmp_path, fmt=fmt, progress=False)
    clips = annotations.read_annotations(tmp_path / f"labelled{ext}")
    assert {(c.video.split("/")[0], c.label) for c in clips} == {(n, n) for n in CLASSES}
    assert all(c.start is None and c.end is None for c in clips) and len(clips) == 8
    unlabeled = annotations.read_annotations(tmp_path / f"unlabeled{ext}")
    assert len(unlabeled) == 8 and all(c.label is None for c in unlabeled)


def test_class_split_is_disjoint_seeded_and_recorded(videos, tmp_path, capsys):
    assert main(["annotations", "--videos", str(videos), "--out", str(tmp_path / "a"), "--format",
                 "flat", "--split-classes", "val=1,test=3", "--seed", "3",
                 "--unlabeled-from", "val"]) == 0
    assert "val: 1 classes, 2 clips" in capsys.readouterr().out
    val = annotations.read_annotations(tmp_path / "a/val.json")
    test = annotations.read_annotations(tmp_path / "a/test.json")
    val_classes, test_classes = annotations.class_names_of(val), annotations.class_names_of(test)
    assert len(val_classes) == 1 and len(test_classes) == 3
    assert sorted(val_classes + test_classes) == sorted(CLASSES)
    unlabeled = annotations.read_annotations(tmp_path / "a/unlabeled.json")
    assert {c.video for c in unlabeled} == {c.video for c in val}  # only the val group's videos
    record = json.loads((tmp_path / "a/split.json").read_text())
    assert record["seed"] == 3 and record["groups"] == {"val": val_classes, "test": test_classes}

    classes = sorted(CLASSES)
    counts = {"val": 1, "test": 3}
    assert split_classes(classes, counts, 3) == record["groups"]  # same seed, same split
    assert len({str(split_classes(classes, counts, seed)) for seed in range(8)}) > 1
    with pytest.raises(PrepareError, match="assigns 3 classes but there are 4"):
        split_classes(classes, {"val": 1, "test": 2}, 0)


def test_rerun_keeps_identical_lists_and_refuses_to_replace_different_ones(videos, tmp_path):
    prepare_annotations(videos, tmp_path, split={"val": 2, "test": 2}, seed=0, progress=False)
    again = prepare_annotations(videos, tmp_path, split={"val": 2, "test": 2}, seed=0, progress=False)
    assert again.written == [] and len(again.unchanged) == 4
    before = (tmp_path / "val.json").read_text()
    seed = next(s for s in range(1, 20)
                if split_classes(sorted(CLASSES), {"val": 2, "test": 2}, s)["val"]
                != json.loads((tmp_path / "split.json").read_text())["groups"]["val"])
    with pytest.raises(OutputExists, match="--overwrite") as refused:
        prepare_annotations(videos, tmp_path, split={"val": 2, "test": 2}, seed=seed, progress=False)
    assert str(tmp_path / "val.json") in str(refused.value)
    assert (tmp_path / "val.json").read_text() == before
    replaced = prepare_annotations(videos, tmp_path, split={"val": 2, "test": 2}, seed=seed,
                                   overwrite=True, progress=False)
    assert str(tmp_path / "val.json") in replaced.written


def test_a_video_outside_any_class_folder_is_an_error(videos, tmp_path):
    (videos / "loose.mp4").symlink_to(CLIPS / "serve" / "serve1.mp4")
    with pytest.raises(PrepareError, match="loose.mp4 is not inside a class folder"):
        prepare_annotations(videos, tmp_path / "out", progress=False)


def test_clip_number_split_keeps_training_and_evaluation_clips_apart(videos, tmp_path):
    assert main(["annotations", "--videos", str(videos), "--out", str(tmp_path / "s"),
                 "--unlabeled-clips", "1-5"]) == 0
    unlabeled = annotations.read_annotations(tmp_path / "s" / "unlabeled.json", label_key=None)
    labelled = annotations.read_annotations(tmp_path / "s" / "labelled.json")
    assert sorted(c.video for c in unlabeled) == sorted(f"{n}/{n}2" for n in CLASSES)
    assert sorted(c.video for c in labelled) == sorted(f"{n}/{n}10" for n in CLASSES)
    assert json.loads((tmp_path / "s" / "split.json").read_text())["unlabeled_clips"] == [1, 5]
    with pytest.raises(PrepareError, match="no labelled"):
        prepare_annotations(videos, tmp_path / "t", unlabeled_clips=(1, 40), progress=False)
