"""The `check` and `stats` data tools."""
import shlex
import shutil
from pathlib import Path

import gin
import numpy as np
import pytest
from PIL import Image

from data_factories import make_dataset, write_flow_pairs, write_json
from mmdistill.config import parse_config
from mmdistill.commands.data import build_parser, main
from mmdistill.data.check import flow_to_colour

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--gin_param", "spatial_transform.short_side = 24", "--gin_param", "spatial_transform.crop_size = (24, 24)",
         "--gin_param", "temporal_sampling.num_frames = 4", "--quiet"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_check_reports_counts_coverage_and_problems(tmp_path, capsys):
    data = make_dataset(tmp_path, videos=("v0", "v1", "v2"), labels=("hit", "miss"), events_per_video=2,
                        flow_size=(12, 16))
    (tmp_path / "flows" / "v1" / "pair_00004.npy").unlink()
    (tmp_path / "skeletons" / "v2.pkl").write_bytes(b"broken")
    montage = tmp_path / "montage.png"
    code = main(["check", "--annotations", str(data["annotations"]), "--visualize", "1", "--out", str(montage)] + SMALL)
    out = capsys.readouterr().out
    assert code == 1
    assert "clips: 6 from 3 videos" in out and "classes: 2" in out
    assert "flow       2/3" in out and "skeleton   2/3" in out and "all        1/3; usable clips 2/6" in out
    assert "frame size, rgb: 32x24 (3)" in out and "frame size, flow: 16x12 (2)" in out
    assert "PROBLEMS: 2 (flow: 1, skeleton: 1)" in out
    assert "missing files ['pair_00004.npy']" in out and "skeletons/v2.pkl: unreadable or corrupt pickle" in out
    picture = np.asarray(Image.open(montage))
    assert picture.shape == (14 + 3 * 24 + 4, 4 * 24, 3)  # caption, rgb/flow/skeleton rows, 4 frames


def test_a_montage_draws_strided_heatmaps_at_the_crop_size(tmp_path, capsys):
    """Heatmaps at half the crop (skeleton_heatmaps.stride = 2) are scaled up over the RGB, and
    alone (no RGB to draw on) to the other rows' size; a joint stays where the crop puts it."""
    data = make_dataset(tmp_path, videos=("v0",), labels=("hit",), flow_size=(12, 16))
    montage = tmp_path / "montage.png"
    strided = SMALL + ["--gin_param", "skeleton_heatmaps.stride = 2", "--gin_param", "skeleton_heatmaps.sigma = 1.0"]
    main(["check", "--annotations", str(data["annotations"]), "--visualize", "1", "--out", str(montage)] + strided)
    half = np.asarray(Image.open(montage))
    assert half.shape == (14 + 3 * 24 + 4, 4 * 24, 3)
    main(["check", "--annotations", str(data["annotations"]), "--visualize", "1", "--out", str(montage)] + SMALL
         + ["--gin_param", "skeleton_heatmaps.sigma = 2.0"])
    full = np.asarray(Image.open(montage))
    skeleton_rows = slice(14 + 2 * 24, 14 + 3 * 24)  # drawn over the RGB: the joints' colour differs from it
    drawn_half = np.abs(half[skeleton_rows].astype(int) - half[14:14 + 24].astype(int)).sum(-1) > 30
    drawn_full = np.abs(full[skeleton_rows].astype(int) - full[14:14 + 24].astype(int)).sum(-1) > 30
    assert drawn_full.any() and (drawn_half & drawn_full).sum() > 0.5 * drawn_full.sum()
    main(["check", "--annotations", str(data["annotations"]), "--visualize", "1", "--out", str(montage),
          "--modalities", "flow", "skeleton"] + strided)
    assert np.asarray(Image.open(montage)).shape == (14 + 2 * 24 + 4, 4 * 24, 3)  # flow's row's size
    main(["check", "--annotations", str(data["annotations"]), "--visualize", "1", "--out", str(montage),
          "--modalities", "skeleton", "rgb"] + strided)
    assert np.asarray(Image.open(montage)).shape == (14 + 2 * 24 + 4, 4 * 24, 3)  # the largest row's size
    capsys.readouterr()


def test_check_clean_dataset_passes(tmp_path, capsys):
    data = make_dataset(tmp_path)
    assert main(["check", "--annotations", str(data["annotations"]), "--decode"] + SMALL) == 0
    assert "no problems found" in capsys.readouterr().out


def test_check_reports_flow_of_another_aspect_ratio(tmp_path, capsys):
    data = make_dataset(tmp_path, videos=("v0", "v1"))  # frames 24x32
    for path in (tmp_path / "flows" / "v1").glob("*.npy"):
        path.unlink()
    write_flow_pairs(tmp_path, "v1", np.zeros((11, 2, 24, 24), np.float32))
    assert main(["check", "--annotations", str(data["annotations"])] + SMALL) == 1
    out = capsys.readouterr().out
    assert "PROBLEMS: 1 (all: 1)" in out and "no problems found" not in out
    assert "[all] video 'v1': its flow is 24x24 (height x width) but its rgb frames are 24x32" in out
    assert "all        1/2; usable clips 1/2" in out


def test_check_reads_gin_files_and_scopes(tmp_path, capsys):
    data = make_dataset(tmp_path)
    config = tmp_path / "data.gin"
    config.write_text(f"fewshot/clip_data.annotations = '{data['annotations']}'\n"
                      f"fewshot/clip_data.on_bad_clip = 'skip'\n")
    assert main(["check", "--gin_file", str(config), "--scope", "fewshot", "--modalities", "rgb"]
                + SMALL) == 0
    assert "modalities: rgb\n" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no annotation file bound"):
        main(["check", "--gin_file", str(config)] + SMALL)


def test_flow_colour_wheel():
    flow = np.zeros((2, 1, 3), np.float32)
    flow[:, 0, 1] = (2, 0)    # rightwards, full speed
    flow[:, 0, 2] = (0, -2)   # upwards
    colours = flow_to_colour(flow).astype(int)
    assert (colours[0, 0] == 255).all()                       # still = white
    assert colours[0, 1, 0] == 255 and colours[0, 1, 1:].max() < 10   # 0 degrees = red
    assert not np.array_equal(colours[0, 1], colours[0, 2])


def test_stats_prints_gin_lines_with_measured_values(tmp_path, capsys):
    data = make_dataset(tmp_path, videos=("v0", "v1"))
    for video, dx in (("v0", 1.0), ("v1", 3.0)):
        flows = np.zeros((11, 2, 24, 32), np.float32)
        flows[:, 0], flows[:, 1] = dx, -2.0
        write_flow_pairs(tmp_path, video, flows)
    assert main(["stats", "--annotations", str(data["annotations"])] + SMALL) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("clip_data")]
    gin.parse_config(lines[0].replace("clip_data.mean", "stats_probe/clip_data.mean"))
    mean = gin.query_parameter("stats_probe/clip_data.mean")
    assert mean["flow"] == pytest.approx([2.0, -2.0], abs=1e-3)
    assert len(mean["skeleton"]) == 17 and 0 < min(mean["skeleton"])
    assert "'flow': [1, 1e-06]" in lines[1]


def test_check_reports_the_annotation_mapping_and_what_each_field_held(tmp_path, capsys):
    make_dataset(tmp_path, videos=("0001", "0002"))
    clips = [{"video_id": "0001", "action_id": 0, "action_name": "check_booklet", "start_frame": 1, "end_frame": 9,
              "action_id_internal": 9},
             {"video_id": "0001", "action_id": 15, "action_name": "take_screw", "start_frame": 5, "end_frame": 8,
              "action_id_internal": 27},
             {"video_id": "0002", "action_id": 0, "action_name": "check_booklet", "start_frame": 3, "end_frame": 6,
              "action_id_internal": 9}]
    annotations = write_json(tmp_path / "meccano_val.json", {"version": 1.0, "split": "val", "clips": clips})
    mapping = Path(__file__).resolve().parents[1] / "gin" / "base" / "mmcdfsl_annotations_meccano.gin"
    assert main(["check", "--gin_file", str(mapping), "--annotations", str(annotations)] + SMALL) == 0
    out = capsys.readouterr().out
    assert "meccano_val.json (flat list, the list under 'clips'): 3 entries -> 3 clips" in out
    assert "  video  <- 'video_id': 3 clips, 2 videos\n" in out
    assert "  start  <- 'start_frame': 3 of 3 clips, frames 0..4 (0-based: the file's number - frame_base 1)" in out
    assert "  end    not read\n" in out
    assert "  label  <- 'action_name': 3 of 3 clips, 2 classes\n" in out
    assert "keys not read" not in out


def test_check_shows_a_label_key_that_matched_nothing(tmp_path, capsys):
    make_dataset(tmp_path)
    annotations = write_json(tmp_path / "list.json", [{"video": "v0", "action": "a"}, {"video": "v1", "action": "b"}])
    assert main(["check", "--annotations", str(annotations)] + SMALL) == 0
    out = capsys.readouterr().out
    assert "list.json (flat list): 2 entries -> 2 clips" in out
    assert "  start  <- 'start': 0 of 2 clips (in no entry)" in out
    assert "  label  <- 'label': 0 of 2 clips, 0 classes" in out
    assert "  keys not read (entries holding them): action (2)" in out
    events = make_dataset(tmp_path / "t", events_per_video=2)["annotations"]
    assert main(["check", "--annotations", str(events)] + SMALL) == 0
    assert "  start  <- events[].'frame': 4 of 4 clips, frames 0..1" in capsys.readouterr().out


def documented_examples() -> list[list[str]]:
    """The data tool commands `--help`, the README and docs/data.md show, as argument lists."""
    texts = [build_parser().format_help(), (ROOT / "README.md").read_text(), (ROOT / "docs/data.md").read_text()]
    return [shlex.split(line, comments=True)[3:] for text in texts for line in text.splitlines()
            if line.strip().startswith("python -m mmdistill.data ")]


def test_documented_examples_use_scopes_their_gin_files_bind():
    examples = documented_examples()
    scoped = [build_parser().parse_args(args) for args in examples if "--scope" in args]
    assert len(scoped) >= 5
    for args in scoped:
        gin.clear_config()
        shipped = [name for name in args.gin_file if (ROOT / name).is_file()]  # not a user's my_paths.gin
        parse_config(shipped, [], finalize=False, skip_unknown=True)  # data bindings only
        assert gin.query_parameter(f"{args.scope}/clip_data.annotations"), (args.gin_file, args.scope)


def test_help_example_for_the_demo_runs(tmp_path, monkeypatch, capsys):
    """The help's first example, as printed, on a tiny dataset where the demo keeps its data."""
    args = next(args for args in documented_examples() if "gin/demo/distill.gin" in args)
    data = make_dataset(tmp_path / ".cache" / "demo_data")
    shutil.copy(data["annotations"], tmp_path / ".cache" / "demo_data" / "unlabeled.json")
    monkeypatch.chdir(tmp_path)
    assert main(args + ["--quiet"]) == 0
    out = capsys.readouterr().out
    assert "clips: 2 from 2 videos; modalities: rgb, flow, skeleton" in out and "no problems found" in out
