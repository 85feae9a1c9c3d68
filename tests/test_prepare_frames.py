"""`prepare frames` on real tennis clips: the right frames, in order, resumable, never clobbering."""
import json
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest

from mmdistill.prepare.__main__ import build_parser, main
from mmdistill.prepare.common import OutputExists
from mmdistill.prepare.frames import prepare_frames

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis_strokes"
pytestmark = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"real clips not found at {CLIPS}")


def link_clips(root: Path, names=("serve/serve1", "smash/smash5")) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.mp4").symlink_to(CLIPS / f"{name}.mp4")
    return root


def frame_files(data: Path, video: str) -> list[Path]:
    return sorted((data / "frames" / video).glob("*.jpg"))


def test_frames_are_the_videos_frames_in_order(tmp_path):
    videos = link_clips(tmp_path / "videos")
    report = prepare_frames(videos, tmp_path / "data", short_side=64, progress=False)
    assert report.ok and report.done == ["serve/serve1", "smash/smash5"]
    decoded = decord.VideoReader(str(CLIPS / "serve/serve1.mp4")).get_batch(list(range(25))).asnumpy()
    files = frame_files(tmp_path / "data", "serve/serve1")
    assert len(files) == len(decord.VideoReader(str(CLIPS / "serve/serve1.mp4")))
    assert files[0].name == "000001.jpg"
    frame = cv2.imread(str(files[19]))[..., ::-1].astype(np.float32)   # frame 20 = index 19
    assert frame.shape == (64, 114, 3)  # 240x426 -> short side 64, aspect kept
    errors = [np.abs(cv2.resize(decoded[i], (114, 64), interpolation=cv2.INTER_AREA) - frame).mean()
              for i in range(len(decoded))]
    assert int(np.argmin(errors)) == 19 and errors[19] < 6


def test_exact_size_through_the_cli_and_help_has_an_example(tmp_path, capsys):
    videos = link_clips(tmp_path / "videos", ["serve/serve1"])
    assert main(["frames", "--videos", str(videos), "--out", str(tmp_path / "data"),
                 "--size", "48x80", "--workers", "1"]) == 0
    assert cv2.imread(str(frame_files(tmp_path / "data", "serve/serve1")[0])).shape == (48, 80, 3)
    assert "1 done, 0 skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["frames", "--help"])
    assert "example:" in capsys.readouterr().out


def test_rerun_skips_and_changed_settings_need_overwrite(tmp_path, capsys):
    videos, data = link_clips(tmp_path / "videos"), tmp_path / "data"
    prepare_frames(videos, data, short_side=48, progress=False)
    first = frame_files(data, "serve/serve1")[0]
    stamp = first.stat().st_mtime_ns
    again = prepare_frames(videos, data, short_side=48, progress=False)
    assert again.done == [] and again.skipped == ["serve/serve1", "smash/smash5"]
    assert first.stat().st_mtime_ns == stamp

    with pytest.raises(OutputExists) as refused:
        prepare_frames(videos, data, short_side=32, progress=False)
    assert str(data / "frames" / "serve" / "serve1") in str(refused.value)
    assert "--overwrite" in str(refused.value) and "short_side=48, now 32" in str(refused.value)
    assert main(["frames", "--videos", str(videos), "--out", str(data), "--short-side", "32"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cv2.imread(str(first)).shape[0] == 48  # nothing was touched

    stray = data / "frames" / "serve" / "serve1" / "999999.jpg"
    stray.write_bytes(first.read_bytes())
    redone = prepare_frames(videos, data, short_side=32, overwrite=True, progress=False)
    assert len(redone.done) == 2 and not stray.exists()
    assert cv2.imread(str(first)).shape[0] == 32


def test_crash_midway_is_redone_but_foreign_output_is_refused(tmp_path):
    videos, data = link_clips(tmp_path / "videos", ["serve/serve1"]), tmp_path / "data"
    prepare_frames(videos, data, short_side=32, progress=False)
    marker = data / ".prepare" / "frames" / "serve" / "serve1.json"
    state = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(state, status="started")))  # as if killed midway
    for path in frame_files(data, "serve/serve1")[30:]:
        path.unlink()
    report = prepare_frames(videos, data, short_side=32, progress=False)
    assert report.done == ["serve/serve1"]
    assert len(frame_files(data, "serve/serve1")) == state["info"]["frames"] == 60

    foreign = tmp_path / "foreign"
    (foreign / "frames" / "serve" / "serve1").mkdir(parents=True)
    (foreign / "frames" / "serve" / "serve1" / "000001.jpg").write_bytes(b"someone else's")
    with pytest.raises(OutputExists, match="not made by this tool"):
        prepare_frames(videos, foreign, short_side=32, progress=False)


def test_a_broken_video_fails_with_its_reason_and_the_rest_finish(tmp_path, capsys):
    videos = link_clips(tmp_path / "videos", ["serve/serve1"])
    (videos / "junk").mkdir()
    (videos / "junk" / "broken.mp4").write_bytes(b"not a video at all")
    data = tmp_path / "data"
    assert main(["frames", "--videos", str(videos), "--out", str(data), "--short-side", "32",
                 "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "1 done, 0 skipped (already finished), 1 failed" in out and "FAILED junk/broken:" in out
    report = json.loads((data / ".prepare" / "frames-report.json").read_text())
    assert report["done"] == ["serve/serve1"] and list(report["failed"]) == ["junk/broken"]
    rerun = prepare_frames(videos, data, short_side=32, progress=False)
    assert rerun.skipped == ["serve/serve1"] and list(rerun.failed) == ["junk/broken"]


def test_parallel_and_serial_runs_write_the_same_files(tmp_path):
    videos = link_clips(tmp_path / "videos")
    serial = prepare_frames(videos, tmp_path / "one", short_side=32, workers=1, progress=False)
    parallel = prepare_frames(videos, tmp_path / "two", short_side=32, workers=2, progress=False)
    assert serial.done == parallel.done and serial.frames == parallel.frames == 121
    for video in serial.done:
        ones, twos = frame_files(tmp_path / "one", video), frame_files(tmp_path / "two", video)
        assert [p.name for p in ones] == [p.name for p in twos]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ones, twos))
