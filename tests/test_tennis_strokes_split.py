"""The tennis strokes lists (`prepare source-split`) and the two pipeline gin files that read them:
no label, and no clip, of the evaluation clips 21-40 may reach a training list."""
import importlib.util
import json
from pathlib import Path

import gin
import pytest

from mmdistill.config import parse_config
from mmdistill.prepare.__main__ import main
from mmdistill.prepare.common import OutputExists, PrepareError
from mmdistill.prepare.source_split import prepare_source_split, split_lists

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("b_slice", "b_volley", "backhand", "f_volley", "forehand", "serve", "smash")
SOURCE = ["serve", "smash"]


@pytest.fixture
def videos(tmp_path) -> Path:
    """The tennis strokes layout, 7 classes x 40 clips, as empty files (nothing is decoded)."""
    root = tmp_path / "videos"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for number in range(1, 41):
            (root / name / f"{name}{number}.mp4").write_bytes(b"")
    return root


def _number(video: str) -> int:
    return int(video.rsplit(video.split("/")[0], 1)[1])


def test_evaluation_clips_reach_no_training_list(videos, tmp_path):
    out = tmp_path / "split"
    assert main(["source-split", "--videos", str(videos), "--out", str(out),
                 "--source-classes", "serve,smash", "--target-clips", "1-20"]) == 0
    lists = {name: json.loads((out / f"{name}.json").read_text())
             for name in ("source", "unlabeled", "val", "test")}
    test_videos = {e["video"] for e in lists["test"]}
    assert len(test_videos) == 100
    assert {_number(v) for v in test_videos} == set(range(21, 41))
    assert {e["label"] for e in lists["test"]} == set(CLASSES) - set(SOURCE)
    for name in ("source", "unlabeled", "val"):  # what training and choosing settings read
        assert not test_videos & {e["video"] for e in lists[name]}, name
    assert all("label" not in e for e in lists["unlabeled"])
    assert {e["label"] for e in lists["source"]} == set(SOURCE) and len(lists["source"]) == 80
    assert [e["video"] for e in lists["val"]] == [e["video"] for e in lists["unlabeled"]]
    assert {_number(e["video"]) for e in lists["val"]} == set(range(1, 21))
    record = json.loads((out / "split.json").read_text())
    assert record["source_classes"] == SOURCE and record["target_clips"] == [1, 20]


def test_rerun_is_idempotent_and_a_different_split_is_refused(videos, tmp_path):
    out = tmp_path / "split"
    args = ["source-split", "--videos", str(videos), "--out", str(out), "--target-clips", "1-20"]
    assert main(args + ["--source-classes", "serve,smash"]) == 0
    assert main(args + ["--source-classes", "serve,smash"]) == 0
    with pytest.raises(OutputExists, match="--overwrite"):
        prepare_source_split(videos, out, source_classes=["serve"], target_clips=(1, 20))


def test_bad_requests_name_the_option():
    videos = [f"{c}/{c}{n}" for c in ("serve", "forehand") for n in range(1, 5)]
    with pytest.raises(PrepareError, match="--source-classes names \\['lob'\\]"):
        split_lists(videos, ["lob"], (1, 2))
    with pytest.raises(PrepareError, match="leave some as test classes"):
        split_lists(videos, ["serve", "forehand"], (1, 2))
    with pytest.raises(PrepareError, match="--target-clips 1-9 leaves test empty"):
        split_lists(videos, ["serve"], (1, 9))


def test_test_slices_are_disjoint_parts_of_test_json_and_leave_the_lists_as_they_were(
        videos, tmp_path, capsys):
    out = tmp_path / "split"
    args = ["source-split", "--videos", str(videos), "--out", str(out),
            "--source-classes", "serve,smash", "--target-clips", "1-20"]
    assert main(args) == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    capsys.readouterr()
    assert main(args + ["--test-slices", "21-30,31-40"]) == 0  # no --overwrite needed
    assert "5 unchanged" in capsys.readouterr().out
    assert {p.name: p.read_text() for p in out.iterdir() if p.name in before} == before
    test = json.loads((out / "test.json").read_text())
    slices = {n: json.loads((out / f"test_{n}.json").read_text()) for n in ("21-30", "31-40")}
    for name, (low, high) in (("21-30", (21, 30)), ("31-40", (31, 40))):
        assert {_number(e["video"]) for e in slices[name]} == set(range(low, high + 1))
        assert {e["label"] for e in slices[name]} == set(CLASSES) - set(SOURCE)
        assert len(slices[name]) == 50
        assert all(e in test for e in slices[name])  # same entries, labels included
    assert not {e["video"] for e in slices["21-30"]} & {e["video"] for e in slices["31-40"]}


@pytest.mark.parametrize("slices, message", [
    ("15-25", "--test-slices 15-25 overlaps --target-clips 1-20"),
    ("21-30,30-40", "--test-slices 30-40 overlaps 21-30"),
    ("41-50", "--test-slices 41-50 has no test clip of b_slice"),
])
def test_bad_test_slices_are_refused_by_name_and_write_nothing(videos, tmp_path, slices,
                                                                message):
    out = tmp_path / "split"
    with pytest.raises(PrepareError, match=message):
        prepare_source_split(videos, out, source_classes=SOURCE, target_clips=(1, 20),
                             test_slices=[tuple(map(int, r.split("-"))) for r in slices.split(",")])
    assert not out.exists()


def test_a_malformed_test_slices_flag_is_named(videos, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["source-split", "--videos", str(videos), "--out", str(tmp_path / "split"),
              "--source-classes", "serve,smash", "--target-clips", "1-20",
              "--test-slices", "21-30;31-40"])
    assert "--test-slices '21-30;31-40': expected FIRST-LAST ranges" in capsys.readouterr().err


def _import_run_configurables():
    spec = importlib.util.spec_from_file_location("run_cli_module", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.import_configurables()


def _value(name: str):
    """A binding's value, through the gin macros it names (`%TARGET_CLIPS` -> its path)."""
    value = gin.query_parameter(name)
    while isinstance(value, gin.config.ConfigurableReference):
        value = gin.query_parameter(f"{'/'.join(value.scopes)}/macro.value")
    return value


def _step_files(pipeline_file: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each step's (gin files, bindings), as the pipeline runs them."""
    from mmdistill.pipeline import pipeline_settings

    gin.clear_config()
    parse_config([pipeline_file], [], finalize=False)
    return pipeline_settings()["steps"]


@pytest.mark.parametrize("pipeline_file, source", [
    ("gin/tennis_strokes.gin", ".cache/tennis_strokes/source_split/source.json"),
    ("gin/tennis_strokes_synthetic.gin", ".cache/tennis_synthetic_source/fewshot.json"),
])
def test_pipelines_train_on_source_and_target_and_evaluate_on_test_only(pipeline_file, source):
    _import_run_configurables()
    steps = _step_files(ROOT / pipeline_file)
    assert list(steps) == ["pretrain_rgb", "pretrain_flow", "pretrain_skeleton", "student_rgb",
                           "student_flow", "student_skeleton", "student_all", "student_control",
                           "evaluate"]
    teachers, recipes = set(), {}
    for step, (files, bindings) in steps.items():
        gin.clear_config()
        parse_config([ROOT / f for f in files], bindings, finalize=False)
        task = gin.query_parameter("experiment.task")
        target = _value("unlabeled/clip_data.annotations")
        assert target == ".cache/tennis_strokes/source_split/unlabeled.json", step
        if step == "evaluate":
            assert task == "evaluate"
            assert _value("fewshot_data/clip_data.annotations") == \
                ".cache/tennis_strokes/source_split/test.json"
            assert gin.query_parameter("evaluate.untrained") is True
            # The control and the appearance baseline are in the comparison (issue 26).
            control = _value("evaluate.baselines")["student_untrained_teachers"]
            assert str(control) == "%STUDENT_CONTROL"
            with pytest.raises(ValueError):  # not bound: its default, on
                gin.query_parameter("evaluate.appearance_baseline")
            assert _value("fewshot.groups_file") == "data/tennis_strokes_groups.json"
        else:
            assert task == ("pretrain" if step.startswith("pretrain") else "distill"), step
        if step in ("student_all", "student_control"):
            recipes[step] = {name: _value(name) for name in (
                "distill.modalities", "distill.weights", "distill.mask_ratio", "train.epochs",
                "train.lr")}
            checkpoints = _value("distill.teacher_checkpoints")
            assert (checkpoints is None) == (step == "student_control")
        if task == "pretrain":
            assert gin.query_parameter("pretrain.source") is True
            assert _value("source/clip_data.annotations") == source
            teachers.add(_value("RGB_TEACHER/macro.value"))
    assert recipes["student_all"] == recipes["student_control"]  # the same recipe
    assert len(teachers) == 1 and ("synthetic" in teachers.pop()) == ("synthetic" in pipeline_file)
