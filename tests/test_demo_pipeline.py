"""The embedded demo, reduced to seconds: the cross-domain world, three stage-1 teacher
pretrainings, single-teacher and all-teacher distillation, and the comparison (untrained network,
teachers on their own modality, students) on the same episodes, all through run.py."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from process_kill import kill_once_paused, saved_epoch

from mmdistill.eval.features import weights_fingerprint
from mmdistill.ckpt.loading import build_from_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "demo_data.source_classes = ('wave', 'squat')", "demo_data.source_clips_per_class = 4",
    "demo_data.target_classes = ('clap', 'kick', 'arm_circles', 'jump', 'march')",
    "demo_data.target_val_classes = ('side_bend', 'spin', 'bow', 'reach', 'jumping_jacks')",
    "demo_data.clips_per_class = 4", "demo_data.unlabeled_clips = 8",
    "demo_data.num_frames = 8", "demo_data.size = (32, 32)",
    "video_vit.embed_dim = 32", "video_vit.depth = 1", "video_vit.num_heads = 2",
    "video_vit.num_frames = 4", "video_vit.img_size = (32, 32)", "SKELETON_SIZE = (16, 16)",
    "temporal_sampling.num_frames = 4", "spatial_transform.crop_size = (32, 32)",
    "data_loader.batch_size = 4", "data_loader.num_workers = 0",
    "train.epochs = 2", "train.warmup_epochs = 0", "train.log_every = 1",
    "fewshot.settings = [(5, 1, 2, 30), (5, 2, 2, 30)]",
    "validation.eval_every = 1",
    "validation.annotations = '.cache/demo_data/fewshot_val.json'",
]


def run_demo(cwd):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # no parent W&B service
    env.update(CI="true", WANDB_MODE="offline", WANDB_X_DISABLE_STATS="true")
    args = [sys.executable, str(ROOT / "run.py"), "--gin_file", str(ROOT / "gin/demo.gin")]
    for binding in SMALL:
        args += ["--gin_param", binding]
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo")
    return cwd, run_demo(cwd)


def _run_dir(cwd, suffix):
    (path,) = (cwd / "output").glob(f"*/*_demo_{suffix}")
    return path


def test_demo_runs_every_stage_and_prints_the_comparison(demo):
    cwd, stdout = demo
    for step in ("pretrain_rgb", "pretrain_flow", "pretrain_skeleton", "student_all", "evaluate"):
        run_dir = _run_dir(cwd, step)
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
        assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    for modality in ("rgb", "flow", "skeleton"):
        assert (cwd / ".cache/demo_teachers" / f"{modality}.ckpt").is_file()
        assert (_run_dir(cwd, f"pretrain_{modality}") / "reconstructions.png").is_file()
    assert (cwd / ".cache/demo_data/manifest.json").is_file()
    assert (cwd / ".cache/demo_students/all.ckpt").is_file()
    assert "Few-shot accuracy (%, mean +/- 95% CI over the same episodes)" in stdout
    summary = json.loads((_run_dir(cwd, "evaluate") / "summary.json").read_text())
    for key in ("fewshot/5way_1shot/acc", "fewshot/5way_1shot/ci95", "fewshot/5way_2shot/acc",
                "teacher_rgb/fewshot/5way_1shot/acc", "top1_action_ensemble"):
        assert key in summary, key
    assert 0 <= summary["fewshot/5way_1shot/acc"] <= 100


MODELS = ("trained (rgb)", "untrained (rgb)", "teacher_rgb (rgb)", "teacher_flow (flow)",
          "teacher_skeleton (skeleton)", "student_rgb_only (rgb)", "student_flow_only (rgb)",
          "student_skeleton_only (rgb)", "student_untrained_teachers (rgb)",
          "colour_histogram (rgb)")


def test_demo_prints_the_full_comparison_and_its_verdicts(demo):
    cwd, stdout = demo
    table = stdout[stdout.index("Few-shot accuracy (%, mean +/- 95% CI over the same episodes)"):]
    rows = [line for line in table.splitlines()[2:2 + len(MODELS)]]
    assert [r.split("  ")[0] for r in rows] == list(MODELS)
    # standard and recording-disjoint (the demo's recordings.json), 1-shot and 2-shot
    assert all(len(re.findall(r"\d+\.\d \+/- \d+\.\d", r)) == 4 for r in rows)
    summary = json.loads((_run_dir(cwd, "evaluate") / "summary.json").read_text())
    assert summary["fewshot/groups/clap"] == 4
    for setting in ("5way_1shot", "5way_2shot", "5way_1shot_disjoint", "5way_2shot_disjoint"):
        for other in ("untrained", "teacher_rgb", "teacher_flow", "teacher_skeleton",
                      "student_rgb_only", "student_flow_only", "student_skeleton_only",
                      "student_untrained_teachers", "colour_histogram"):
            word = summary[f"fewshot/{setting}/vs_{other}"]
            assert word in ("better", "overlap", "worse")
            ours, theirs = summary[f"fewshot/{setting}/acc"], summary[f"{other}/fewshot/{setting}/acc"]
            line = re.search(rf"^{setting}: trained .* vs {other} .*: (.*)$", table, re.M)
            assert line and line.group(1).startswith(
                {"better": "better", "worse": "worse", "overlap": "not distinguishable"}[word])
            if word == "better":
                assert ours > theirs
    assert summary["evaluated/teacher_flow/modality"] == "flow"
    assert summary["evaluated/untrained/checkpoint"].startswith("none")
    # The teacher control: the all-teacher recipe from untrained teachers, kept and evaluated.
    control = cwd / ".cache/demo_students/untrained_teachers.ckpt"
    assert summary["evaluated/student_untrained_teachers/checkpoint"] == str(control.relative_to(cwd))
    assert summary["evaluated/colour_histogram/checkpoint"].startswith("none (RGB colour")
    assert (_run_dir(cwd, "evaluate") / "comparison.png").is_file()
    for modality in ("rgb", "flow", "skeleton"):
        kept = cwd / ".cache/demo_students" / f"{modality}_only.ckpt"
        assert summary[f"evaluated/student_{modality}_only/checkpoint"] == str(kept.relative_to(cwd))
        assert kept.is_file()


def test_validation_runs_every_epoch_on_disjoint_classes(demo):
    cwd, _ = demo
    records = [json.loads(line) for line in
               (_run_dir(cwd, "student_all") / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/fewshot/5way_1shot/acc" in r]
    epoch_ends = [r["step"] for r in records if "train/epoch_loss" in r]
    assert [r["step"] for r in val] == epoch_ends and len(val) == 2
    val_classes = {c for r in val for c in r if c.startswith("val/fewshot/5way_1shot/class/")}
    test_summary = json.loads((_run_dir(cwd, "evaluate") / "summary.json").read_text())
    test_classes = {k.split("/")[3] for k in test_summary if k.startswith("fewshot/5way_1shot/class/")}
    assert len(val_classes) == 5 and len(test_classes) == 5
    assert not {c.split("/")[4] for c in val_classes} & test_classes


def test_pretrained_checkpoints_load_as_teachers(demo):
    cwd, _ = demo
    for modality, channels in (("rgb", 3), ("flow", 2), ("skeleton", 17)):
        model, report = build_from_checkpoint(cwd / ".cache/demo_teachers" / f"{modality}.ckpt")
        assert report.prefix == "encoder." and model.in_chans == channels
        assert not report.skipped


def test_evaluation_used_the_named_weights(demo):
    """The original evaluated the frozen RGB teacher while claiming the student; we record and
    check the fingerprint of the weights that produced each number."""
    cwd, _ = demo
    summary = json.loads((_run_dir(cwd, "evaluate") / "summary.json").read_text())
    student, _ = build_from_checkpoint(cwd / ".cache/demo_students/all.ckpt", prefix="student")
    teacher, _ = build_from_checkpoint(cwd / ".cache/demo_teachers/rgb.ckpt")
    assert summary["evaluated/trained/weights_sha"] == weights_fingerprint([student])
    assert summary["evaluated/teacher_rgb/weights_sha"] == weights_fingerprint([teacher])
    assert weights_fingerprint([student]) != weights_fingerprint([teacher])
    assert not all(torch.equal(a, b) for a, b in
                   zip(student.state_dict().values(), teacher.state_dict().values()))


def test_rerun_reuses_data_and_teachers(demo):
    cwd, _ = demo
    teacher = cwd / ".cache/demo_teachers/rgb.ckpt"
    stamp = teacher.stat().st_mtime_ns
    stdout = run_demo(cwd)
    assert "pretrain_rgb: skipped" in stdout and "pretrain_skeleton: skipped" in stdout
    assert "student_flow: skipped" in stdout and "student_all: skipped" in stdout
    assert teacher.stat().st_mtime_ns == stamp
    assert len(list((cwd / "output").glob("*/*_demo_evaluate*"))) == 2  # the comparison reruns


def _distill_command(cwd, *bindings, name, runner=(str(ROOT / "run.py"),)):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # no parent W&B service
    env.update(CI="true", WANDB_MODE="offline", WANDB_X_DISABLE_STATS="true")
    args = [sys.executable, *runner, "--gin_file", "gin/demo/distill.gin"]
    for binding in [*SMALL, "experiment.test = False", "train.epochs = 3",
                    f"experiment.name = '{name}'", *bindings]:
        args += ["--gin_param", binding]
    return dict(args=args, cwd=cwd, env=env)


def _distill(cwd, *bindings, name):
    return subprocess.run(**_distill_command(cwd, *bindings, name=name), capture_output=True,
                          text=True, timeout=300)


def test_killed_distillation_resumes_bit_identical(demo):
    """The real distillation through run.py: SIGKILL from outside right after epoch 0 (its
    checkpoint and validation done), resume, compare with a run that was never interrupted."""
    cwd, _ = demo
    with open(cwd / "interrupted.log", "w") as log:
        held = _distill_command(cwd, name="interrupted",
                                runner=(str(ROOT / "tests/paused_run.py"), "0"))
        killed = subprocess.Popen(**held, stdout=log, stderr=subprocess.STDOUT)
        run_dir = kill_once_paused(killed, cwd / "output", "*/*_interrupted")
    assert killed.returncode == -9, (cwd / "interrupted.log").read_text()[-2000:]
    assert saved_epoch(run_dir) == 0
    resumed = _distill(cwd, "experiment.resume = True", name="interrupted")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[train] resumed from" in resumed.stdout, resumed.stdout[-2000:]
    straight = _distill(cwd, name="straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    (interrupted_dir,) = (cwd / "output").glob("*/*_interrupted")
    (straight_dir,) = (cwd / "output").glob("*/*_straight")
    a = torch.load(interrupted_dir / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(straight_dir / "checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    steps = [json.loads(l)["step"] for l in (interrupted_dir / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(l)["step"] for l in (straight_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == reference
    assert (interrupted_dir / "wandb_run_id").read_text() == a["wandb_run_id"] + "\n"


def test_run_killed_mid_epoch_resumes_bit_identical(demo):
    """A real run.py SIGKILLed from outside in the middle of an epoch (inside epoch 1's last
    optimizer step, after its step 3 was logged and before epoch 1's checkpoint), resumed with experiment.resume=True: its weights end
    bit for bit equal to a run never interrupted, and metrics.jsonl holds every step once."""
    cwd, _ = demo
    with open(cwd / "midepoch.log", "w") as log:
        held = _distill_command(cwd, "train.log_every = 1", name="midepoch",
                                runner=(str(ROOT / "tests/paused_run.py"), "step=4"))
        killed = subprocess.Popen(**held, stdout=log, stderr=subprocess.STDOUT)
        run_dir = kill_once_paused(killed, cwd / "output", "*/*_midepoch")
    assert killed.returncode == -9, (cwd / "midepoch.log").read_text()[-2000:]
    assert saved_epoch(run_dir) == 0  # 2 steps an epoch: the checkpoint is epoch 0's (step 2)
    logged = [json.loads(line).get("step") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert 3 in logged and 4 not in logged  # it died mid-epoch, past its checkpoint
    resumed = _distill(cwd, "train.log_every = 1", "experiment.resume = True", name="midepoch")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = _distill(cwd, "train.log_every = 1", name="straight_midepoch")
    assert straight.returncode == 0, straight.stderr[-2000:]
    (straight_dir,) = (cwd / "output").glob("*/*_straight_midepoch")
    a = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(straight_dir / "checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6 and a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line)["step"] for line in (straight_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == reference


def test_sigterm_is_recorded_as_interrupted(demo):
    """A scheduler's SIGTERM: summary.json says 'interrupted' and the last checkpoint is whole."""
    import signal
    import time

    cwd, _ = demo
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(CI="true", WANDB_MODE="offline", WANDB_X_DISABLE_STATS="true")
    args = [sys.executable, str(ROOT / "run.py"), "--gin_file", "gin/demo/distill.gin"]
    for binding in [*SMALL, "experiment.test = False", "train.epochs = 200",
                    "experiment.name = 'terminated'"]:
        args += ["--gin_param", binding]
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list((cwd / "output").glob("*/*_terminated/checkpoints/last.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    assert process.returncode != 0
    (run_dir,) = (cwd / "output").glob("*/*_terminated")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["epoch"] >= 0


def test_heatmaps_drawn_in_the_training_step_train_like_the_loaders(demo):
    """skeleton_heatmaps.render_on='device' through run.py: the step draws the skeleton teacher's
    input from shipped keypoints, and training ends where loader-drawn heatmaps lead."""
    cwd, _ = demo
    weights = {}
    for where in ("loader", "device"):
        out = _distill(cwd, f"skeleton_heatmaps.render_on = '{where}'", "train.epochs = 1",
                       name=f"heatmaps_{where}")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        (run_dir,) = (cwd / "output").glob(f"*/*_heatmaps_{where}")
        if where == "device":  # the renderer was built with it (gin records what was used)
            assert "skeleton_heatmaps.render_on = 'device'" in (run_dir / "operative_config.gin").read_text()
        weights[where] = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["model"]
    assert weights["loader"].keys() == weights["device"].keys()
    for key, value in weights["loader"].items():
        torch.testing.assert_close(weights["device"][key], value, rtol=1e-4, atol=1e-5, msg=key)
