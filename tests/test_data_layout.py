"""One on-disk layout: the class-folder reader and the preparation tools see the same videos."""
from mmdistill.data.annotations import read_class_folders
from mmdistill.data.layout import VIDEO_EXTENSIONS
from mmdistill.prepare.common import find_videos


def test_class_folder_reader_finds_mpeg_videos(tmp_path):
    for name in ["serve/s1.mpg", "serve/s2.MPEG", "volley/v1.mp4", "volley/notes.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    clips = read_class_folders(tmp_path)
    assert [(c.video, c.label) for c in clips] == [("serve/s1", "serve"), ("serve/s2", "serve"),
                                                   ("volley/v1", "volley")]


def test_class_folder_reader_and_prepare_agree_on_every_extension(tmp_path):
    for i, extension in enumerate(VIDEO_EXTENSIONS):
        (tmp_path / "walk").mkdir(exist_ok=True)
        (tmp_path / "walk" / f"clip{i}{extension}").write_bytes(b"")
    assert {".mpg", ".mpeg", ".mp4"} <= set(VIDEO_EXTENSIONS)
    read = [c.video for c in read_class_folders(tmp_path)]
    prepared = list(find_videos(tmp_path))
    assert read == prepared and len(read) == len(VIDEO_EXTENSIONS)
