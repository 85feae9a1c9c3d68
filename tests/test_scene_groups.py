"""The scene-grouping command and the committed, reviewed tennis strokes groups file."""
import json
from pathlib import Path

import numpy as np
import pytest

from mmdistill.data.groups import clip_groups, read_groups_file
from mmdistill.eval.scene_groups import cluster, main

ROOT = Path(__file__).resolve().parent.parent


def _write_video(path, colour, frames=12, size=(32, 18)):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    rng = np.random.default_rng(len(str(path)))
    for _ in range(frames):
        frame = np.clip(np.array(colour)[::-1] + rng.integers(-10, 10, (size[1], size[0], 3)), 0, 255)
        writer.write(frame.astype(np.uint8))
    writer.release()


def test_consecutive_clips_of_one_scene_become_one_group(tmp_path):
    # swing1-3 on a red court, swing4-5 on a blue one, swing6 back on the red court.
    for number, colour in zip(range(1, 7), [(200, 40, 40)] * 3 + [(40, 40, 200)] * 2 + [(200, 40, 40)]):
        _write_video(tmp_path / "clips" / "swing" / f"swing{number}.mp4", colour)
    out = tmp_path / "groups.json"
    assert main(["--clips", str(tmp_path / "clips"), "--out", str(out), "--step", "2",
                 "--montages", str(tmp_path / "review")]) == 0
    groups = read_groups_file(out)
    assert groups["swing/swing1"] == groups["swing/swing2"] == groups["swing/swing3"] == groups["swing/swing6"]
    assert groups["swing/swing4"] == groups["swing/swing5"] != groups["swing/swing1"]
    assert (tmp_path / "review" / "swing.png").is_file()
    assert "scene_groups" in json.loads(out.read_text())["how"]
    # A reviewed file is never replaced without asking.
    assert main(["--clips", str(tmp_path / "clips"), "--out", str(out)]) == 2


def test_runs_are_cut_where_neighbours_differ_and_merged_by_linkage():
    features = np.array([[0.0], [0.1], [1.0], [1.1], [0.05]])
    assert cluster(features, cut=0.5, merge=0.3) == [[0, 1, 4], [2, 3]]
    assert cluster(features, cut=0.5, merge=0.01) == [[0, 1], [2, 3], [4]]


def test_the_committed_tennis_strokes_groups_cover_every_clip_once():
    path = ROOT / "data" / "tennis_strokes_groups.json"
    classes = ("b_slice", "b_volley", "backhand", "f_volley", "forehand", "serve", "smash")
    videos = [f"{c}/{c}{n}" for c in classes for n in range(1, 41)]
    groups = clip_groups(videos, groups_file=path)  # raises on a missing or doubled clip
    assert len(read_groups_file(path)) == len(videos)
    assert all(g.split("/")[0] == v.split("/")[0] for g, v in zip(groups, videos))


def test_colour_baseline_from_videos_standard_and_group_disjoint(tmp_path, capsys):
    from mmdistill.eval.colour_baseline import main as baseline

    # Two classes; each has two recordings (scenes) of two clips. Class a: red and green scenes,
    # class b: blue and yellow. Standard 1-shot episodes find the class from the scene.
    scenes = {"a": [(200, 40, 40), (40, 200, 40)], "b": [(40, 40, 200), (200, 200, 40)]}
    groups = {}
    for label, colours in scenes.items():
        for r, colour in enumerate(colours):
            for k in range(2):
                number = 2 * r + k + 1
                _write_video(tmp_path / "clips" / label / f"{label}{number}.mp4", colour)
                groups.setdefault(f"{label}/r{r}", []).append(f"{label}/{label}{number}")
    (tmp_path / "groups.json").write_text(json.dumps({"groups": groups}))
    out = tmp_path / "report.json"
    assert baseline(["--clips", str(tmp_path / "clips"), "--groups_file", str(tmp_path / "groups.json"),
                     "--way", "2", "--shot", "1", "--queries", "1", "--episodes", "40", "--numbers", "1-4",
                     "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    accuracy = {s["name"]: s["ensemble"]["mean"] for s in report["settings"]}
    assert accuracy["2way_1shot"] > 60  # half the queries share the support's scene
    assert accuracy["2way_1shot_disjoint"] < 60  # no scene of the query is in its support
    assert report["groups_per_class"] == {"a": 2, "b": 2}
