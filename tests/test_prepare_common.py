"""What every prepare step shares: finding the videos under a folder."""
import json

import numpy as np
from data_factories import smooth_frames, write_video

from mmdistill.prepare.__main__ import main
from mmdistill.prepare.common import find_videos


def test_symlinked_class_folders_are_followed(tmp_path):
    """A video tree whose class folders are links to where the videos are (a common way to pick
    classes without copying) is read through the links; a link back up is not walked twice."""
    store, rng = tmp_path / "store", np.random.default_rng(0)
    for label in ("serve", "smash"):
        for number in (1, 2):
            write_video(store / label / f"{label}{number}.mp4", smooth_frames(rng, 6, (16, 16)))
    tree = tmp_path / "videos"
    tree.mkdir()
    for label in ("serve", "smash"):
        (tree / label).symlink_to(store / label, target_is_directory=True)
    (store / "serve" / "loop").symlink_to(tree, target_is_directory=True)  # a cycle
    assert list(find_videos(tree)) == ["serve/serve1", "serve/serve2", "smash/smash1",
                                       "smash/smash2"]
    assert main(["annotations", "--videos", str(tree), "--out", str(tmp_path / "lists")]) == 0
    written = sorted(p.name for p in (tmp_path / "lists").iterdir())
    assert "unlabeled.json" in written, written
    listed = json.loads((tmp_path / "lists" / "unlabeled.json").read_text())
    assert len(listed) == 4, listed
