"""source-split refuses what would silently bend the split: a class named twice, a test class
with no clip in the target range (it would be missing from unlabeled.json and val.json), and it
follows class folders that are symlinks."""
import json
import os

import pytest

from mmdistill.prepare.__main__ import main
from mmdistill.prepare.common import PrepareError
from mmdistill.prepare.source_split import split_lists


def test_a_class_named_twice_is_refused():
    videos = [f"{c}/{c}{n}" for c in ("serve", "smash", "forehand") for n in range(1, 5)]
    with pytest.raises(PrepareError, match="--source-classes names 'serve' twice"):
        split_lists(videos, ["serve", "smash", "serve"], (1, 2))


def test_a_test_class_without_target_clips_is_refused_by_name():
    videos = ([f"{c}/{c}{n}" for c in ("serve", "forehand") for n in range(1, 5)]
              + [f"lob/lob{n}" for n in range(10, 14)])  # no clip numbered 1-2
    with pytest.raises(PrepareError, match="lob.*no clip numbered 1-2"):
        split_lists(videos, ["serve"], (1, 2))


def test_symlinked_class_folders_are_followed(tmp_path):
    real, root = tmp_path / "elsewhere", tmp_path / "videos"
    for name in ("serve", "forehand", "backhand"):
        folder = (real if name == "backhand" else root) / name
        folder.mkdir(parents=True)
        for number in range(1, 5):
            (folder / f"{name}{number}.mp4").write_bytes(b"")
    os.symlink(real / "backhand", root / "backhand")
    out = tmp_path / "split"
    assert main(["source-split", "--videos", str(root), "--out", str(out),
                 "--source-classes", "serve", "--target-clips", "1-2"]) == 0
    test = json.loads((out / "test.json").read_text())
    assert {e["label"] for e in test} == {"forehand", "backhand"}
