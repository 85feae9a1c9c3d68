"""python -m mmdistill.eval: saved models evaluated on a folder per class of videos, end to end."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ckpt_factories import write_mmdistill_ckpt
from data_factories import smooth_frames, write_video

from mmdistill.ckpt.command import write_official
from mmdistill.eval.__main__ import main
from mmdistill.models.vit import video_vit

TINY = dict(num_frames=4, img_size=(32, 32), patch_size=16, tubelet_size=2, embed_dim=32,
            depth=1, num_heads=2)
CLASSES = ("serve", "smash", "volley")
PROTOCOL = ["--way", "3", "--shot", "1", "--shot", "2", "--queries", "3", "--episodes", "20",
            "--workers", "0", "--device", "cpu"]


@pytest.fixture
def clips(tmp_path):
    """3 classes x 6 short mp4 clips, each class its own colour pattern."""
    rng = np.random.default_rng(0)
    root = tmp_path / "clips"
    for label in CLASSES:
        for number in range(1, 7):
            write_video(root / label / f"{label}{number}.mp4", smooth_frames(rng, 10, (32, 64)))
    return root


@pytest.fixture
def checkpoints(tmp_path):
    """One checkpoint in our pretraining format, one in the official VideoMAE layout."""
    torch.manual_seed(0)
    ours = write_mmdistill_ckpt(tmp_path / "pretrain.ckpt", {"encoder.": video_vit(**TINY)})
    torch.manual_seed(1)
    official = write_official(video_vit(**TINY), tmp_path / "official.pth")
    return {"ours": ours, "official": official}


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    print(captured.err)  # shown by pytest when an assertion fails
    return code, captured.out, captured.err


def test_two_checkpoints_are_evaluated_on_the_same_episodes(tmp_path, clips, checkpoints, capsys):
    out = tmp_path / "eval"
    code, stdout, _ = run(["--checkpoint", f"pretrained={checkpoints['ours']}",
                           "--checkpoint", checkpoints["official"], "--clips", clips,
                           "--out", out, *PROTOCOL], capsys)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    for name in ("pretrained", "official"):  # the second is named by its file
        for setting in ("3way_1shot", "3way_2shot"):
            assert 0 <= summary[f"{name}/fewshot/{setting}/acc"] <= 100
            assert summary[f"{name}/fewshot/{setting}/episodes"] == 20
        assert summary[f"evaluated/{name}/modality"] == "rgb"
    assert summary["evaluated/pretrained/checkpoint"] == str(checkpoints["ours"])
    assert summary["evaluated/official/checkpoint"] == str(checkpoints["official"])
    # Different weights, different features, but the same clips and episodes.
    assert summary["evaluated/pretrained/weights_sha"] != summary["evaluated/official/weights_sha"]
    reports = [json.loads((out / f"fewshot_{n}.json").read_text()) for n in ("pretrained", "official")]
    for report in reports:
        assert report["num_clips"] == 18 and report["num_classes"] == 3
    assert reports[0]["settings"][0]["per_class_queries"] == reports[1]["settings"][0]["per_class_queries"]
    # The stage's comparison table, one column per model, with the 95% CI.
    assert "mean +/- 95% CI over the same episodes" in stdout
    assert "pretrained (rgb)" in stdout and "official (rgb)" in stdout
    # Geometry came from the models: 4 frames of 32x32.
    config = (out / "operative_config.gin").read_text()
    assert "temporal_sampling.num_frames = 4" in config
    assert "spatial_transform.crop_size = (32, 32)" in config


def test_the_same_run_gives_the_same_numbers(tmp_path, clips, checkpoints, capsys):
    """Episodes come from --seed alone: a rerun (features from the cache) repeats every number."""
    argv = ["--checkpoint", f"a={checkpoints['ours']}", "--clips", clips, "--out", tmp_path / "e",
            *PROTOCOL]
    assert run(argv, capsys)[0] == 0
    first = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert run([*argv, "--overwrite"], capsys)[0] == 0
    second = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert first["a/fewshot/3way_1shot/acc"] == second["a/fewshot/3way_1shot/acc"]
    assert run([*argv, "--overwrite", "--seed", "7"], capsys)[0] == 0
    other = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert other["a/fewshot/3way_2shot/acc"] != first["a/fewshot/3way_2shot/acc"]


@pytest.mark.parametrize("case, extra, message", [
    ("missing folder", ["--clips", "{tmp}/nowhere"], r"--clips .*nowhere: no such folder"),
    ("flow from videos", ["--clips", "{clips}", "--modality", "flow"],
     r"--modality ours=flow needs prepared data.*--annotations FILE --data-root DIR"),
    ("unknown model", ["--clips", "{clips}", "--modality", "student=rgb"],
     r"--modality student=rgb: no model named 'student'; the models are ours"),
    ("wrong size", ["--clips", "{clips}", "--size", "64", "64"],
     r"--size 64 64: the models take 32x32 crops .*leave --size out or give 32 32"),
    ("no clips", [], r"--clips DIR .* or --annotations FILE --data-root DIR"),
])
def test_a_bad_argument_is_named_with_its_fix(tmp_path, clips, checkpoints, capsys, case, extra,
                                              message):
    extra = [a.format(tmp=tmp_path, clips=clips) for a in extra]
    code, _, err = run(["--checkpoint", f"ours={checkpoints['ours']}", "--out", tmp_path / "e",
                        *PROTOCOL, *extra], capsys)
    assert code == 2
    assert re.search(message, err), err
    assert not (tmp_path / "e").exists()  # refused before anything was written


def test_existing_results_are_kept_without_overwrite(tmp_path, clips, checkpoints, capsys):
    out = tmp_path / "e"
    out.mkdir()
    (out / "summary.json").write_text("{\"mine\": 1}")
    code, _, err = run(["--checkpoint", checkpoints["ours"], "--clips", clips, "--out", out,
                        *PROTOCOL], capsys)
    assert code == 2
    assert "--out" in err and "--overwrite" in err
    assert json.loads((out / "summary.json").read_text()) == {"mine": 1}


def test_a_missing_checkpoint_and_a_duplicate_name_are_refused(tmp_path, clips, checkpoints,
                                                               capsys):
    base = ["--clips", clips, "--out", tmp_path / "e", *PROTOCOL]
    code, _, err = run(["--checkpoint", f"x={tmp_path / 'gone.ckpt'}", *base], capsys)
    assert code == 2 and "gone.ckpt does not exist" in err
    code, _, err = run(["--checkpoint", f"x={checkpoints['ours']}",
                        "--checkpoint", f"x={checkpoints['official']}", *base], capsys)
    assert code == 2 and "two models are named 'x'" in err


def test_models_built_for_other_clip_sizes_are_refused_together(tmp_path, clips, checkpoints,
                                                                capsys):
    torch.manual_seed(2)
    longer = write_official(video_vit(**{**TINY, "num_frames": 8}), tmp_path / "longer.pth")
    code, _, err = run(["--checkpoint", checkpoints["ours"], "--checkpoint", longer,
                        "--clips", clips, "--out", tmp_path / "e", *PROTOCOL], capsys)
    assert code == 2
    assert "pretrain 4x32x32, longer 8x32x32" in err and "separate runs" in err


# --- issue 25: arguments by their flags before any work; old results kept until new ones exist

@pytest.mark.parametrize("extra, flag", [
    (["--shot", "0"], "--shot 0"), (["--episodes", "-5"], "--episodes -5"),
    (["--sampling-rate", "0"], "--sampling-rate 0"), (["--queries", "0"], "--queries 0"),
])
def test_a_bad_number_is_refused_by_its_flag_before_any_work(tmp_path, clips, checkpoints, capsys,
                                                              extra, flag):
    code, _, err = run(["--checkpoint", f"ours={checkpoints['ours']}", "--clips", clips,
                        "--out", tmp_path / "e", *PROTOCOL, *extra], capsys)
    assert code == 2
    assert flag in err and "must be at least" in err, err
    assert not (tmp_path / "e").exists()  # no feature was extracted, nothing written


def test_a_flow_checkpoint_given_as_rgb_gets_the_flag_that_fixes_it(tmp_path, clips, capsys):
    flow = write_official(video_vit(**{**TINY, "in_chans": 2}), tmp_path / "flow.pth")
    code, _, err = run(["--checkpoint", f"flow={flow}", "--clips", clips, "--out", tmp_path / "e",
                        *PROTOCOL], capsys)
    assert code == 2
    assert "--modality flow=flow" in err and "evaluate.modalities" not in err, err


def _old_results(out):
    out.mkdir()
    (out / "summary.json").write_text("{\"mine\": 1}")
    (out / "fewshot_old.json").write_text("{}")


def test_overwrite_keeps_the_old_results_when_an_argument_is_refused(tmp_path, clips, checkpoints,
                                                                     capsys):
    out = tmp_path / "e"
    _old_results(out)
    code, _, err = run(["--checkpoint", checkpoints["ours"], "--clips", clips, "--out", out,
                        "--overwrite", "--frames", "16", *PROTOCOL], capsys)
    assert code == 2 and "--frames 16" in err
    assert json.loads((out / "summary.json").read_text()) == {"mine": 1}
    assert (out / "fewshot_old.json").is_file()


def test_overwrite_waits_for_the_lock_and_restores_old_results_on_failure(tmp_path, clips,
                                                                         checkpoints, capsys,
                                                                         monkeypatch):
    import subprocess
    import sys

    out = tmp_path / "e"
    _old_results(out)
    argv = ["--checkpoint", f"a={checkpoints['ours']}", "--clips", clips, "--out", out,
            "--overwrite", *PROTOCOL]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from mmdistill.rundir import lock_run_dir; "
        f"lock_run_dir({str(out)!r}); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])  # imports mmdistill
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run(argv, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and "in use by another process" in err
    assert json.loads((out / "summary.json").read_text()) == {"mine": 1}

    import mmdistill.evaluation

    def broken(ctx, ckpt):
        raise ValueError("clips went bad halfway")

    monkeypatch.setattr(mmdistill.evaluation, "evaluate_stage", broken)
    code, _, err = run(argv, capsys)
    assert code == 1 and "previous results" in err and "failed_summary.json" in err
    assert json.loads((out / "summary.json").read_text()) == {"mine": 1}
    assert (out / "fewshot_old.json").is_file()
    assert json.loads((out / "failed_summary.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    assert run(argv, capsys)[0] == 0  # a run that finishes replaces them
    assert "a/fewshot/3way_1shot/acc" in json.loads((out / "summary.json").read_text())
    assert not (out / "fewshot_old.json").exists() and not (out / "failed_summary.json").exists()


def test_a_skeleton_model_is_shown_heatmaps_as_it_was_trained(tmp_path, capsys):
    """A skeleton teacher trained on heatmaps at half the crop (its checkpoint's config records
    skeleton_heatmaps.stride = 2, sigma 1) reads 16x16 heatmaps of the 32x32 clips the RGB model
    reads; without that record its 16x16 input would be taken for the clip size and refused."""
    from data_factories import make_dataset
    data = make_dataset(tmp_path / "data", videos=tuple(f"v{i}" for i in range(4)), labels=CLASSES,
                        num_frames=12, size=(32, 32), events_per_video=3)
    torch.manual_seed(0)
    rgb = write_mmdistill_ckpt(tmp_path / "rgb.ckpt", {"encoder.": video_vit(**TINY)})
    skeleton = write_mmdistill_ckpt(tmp_path / "skeleton.ckpt", {"encoder.": video_vit(
        **{**TINY, "in_chans": 17, "img_size": (16, 16), "patch_size": 8})})
    payload = torch.load(skeleton, weights_only=False)
    recorded = tmp_path / "skeleton_recorded.ckpt"
    torch.save({**payload, "gin_config": "source/skeleton_heatmaps.sigma = 1.0\n"
                                         "source/skeleton_heatmaps.stride = 2\n"
                                         "unlabeled/skeleton_heatmaps.stride = 2\n"}, recorded)
    common = ["--annotations", data["annotations"], "--data-root", tmp_path / "data",
              "--modality", "skel=skeleton", "--way", "3", "--shot", "1", "--queries", "2",
              "--episodes", "20", "--workers", "0", "--device", "cpu"]
    code, out, err = run(["--checkpoint", f"rgb={rgb}", "--checkpoint", f"skel={recorded}",
                          "--out", tmp_path / "ok", *common], capsys)
    assert code == 0, err
    config = (tmp_path / "ok" / "operative_config.gin").read_text()
    assert "fewshot_data/skeleton_heatmaps.stride = 2" in config
    assert "fewshot_data/skeleton_heatmaps.sigma = 1.0" in config
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["evaluated/skel/modality"] == "skeleton" and "skel/fewshot/3way_1shot/acc" in summary
    code, out, err = run(["--checkpoint", f"rgb={rgb}", "--checkpoint", f"skel={skeleton}",
                          "--out", tmp_path / "unrecorded", *common], capsys)
    assert code == 2 and "different sizes" in err and "skel 4x16x16" in err


def test_the_drawing_a_model_was_trained_on_is_read_from_its_config():
    from mmdistill.eval.__main__ import trained_drawing
    config = ("# Parameters for source/skeleton_heatmaps:\nsource/skeleton_heatmaps.sigma = 1.0\n"
              "source/skeleton_heatmaps.stride = 2\nunlabeled/skeleton_heatmaps.stride = 2\n"
              "skeleton_heatmaps_other.stride = 5\n")
    assert trained_drawing(config, "x") == {"sigma": 1.0, "stride": 2}
    assert trained_drawing("video_vit.depth = 3\n", "x") == {}
    with pytest.raises(ValueError, match=r"teacher.ckpt: its config draws skeleton heatmaps in more than one way"):
        trained_drawing(config + "fewshot_data/skeleton_heatmaps.stride = 1\n", "teacher.ckpt")
