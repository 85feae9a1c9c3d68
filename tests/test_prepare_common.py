"""What every prepare step shares: finding the videos under a folder."""
import json

import numpy as np
from data_factories import smooth_frames, write_video

from mmdistill.prepare.__main__ import main
from mmdistill.prepare.common import find_videos


def test_symlinked_class_folders_are_followed(tmp_path):
    """A video tree whose class folders are links to where the videos are (a common way to pick
    classes without copying) is read through the links."""
    store, rng = tmp_path / "store", np.random.default_rng(0)
    for label in ("serve", "smash"):
        for number in (1, 2):
            write_video(store / label / f"{label}{number}.mp4", smooth_frames(rng, 6, (16, 16)))
    tree = tmp_path / "videos"
    tree.mkdir()
    for label in ("serve", "smash"):
        (tree / label).symlink_to(store / label, target_is_directory=True)
    assert list(find_videos(tree)) == ["serve/serve1", "serve/serve2", "smash/smash1",
                                       "smash/smash2"]
    assert main(["annotations", "--videos", str(tree), "--out", str(tmp_path / "lists")]) == 0
    written = sorted(p.name for p in (tmp_path / "lists").iterdir())
    assert "unlabeled.json" in written, written
    listed = json.loads((tmp_path / "lists" / "unlabeled.json").read_text())
    assert len(listed) == 4, listed


def test_a_folder_reached_twice_through_links_is_refused(tmp_path):
    """A link loop (or one folder linked under two names) would count its videos twice: refused,
    naming both paths."""
    import pytest

    from mmdistill.prepare.common import PrepareError

    rng = np.random.default_rng(0)
    tree = tmp_path / "videos"
    write_video(tree / "serve" / "serve1.mp4", smooth_frames(rng, 6, (16, 16)))
    (tree / "serve" / "loop").symlink_to(tree, target_is_directory=True)  # a cycle
    with pytest.raises(PrepareError, match="same folder"):
        find_videos(tree)
