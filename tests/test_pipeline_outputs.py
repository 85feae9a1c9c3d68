"""Two pipelines started together on one teacher cache: the second waits for the first to keep
the step's checkpoint and then skips the step, instead of training it again and failing when it
finds the file made meanwhile."""
import threading
import time

import gin

from mmdistill import pipeline


def test_a_second_pipeline_waits_then_reuses_the_kept_output(tmp_path, monkeypatch, capsys):
    step_file = tmp_path / "step.gin"
    step_file.write_text("")
    output = tmp_path / "cache" / "teacher.ckpt"
    trained = []
    entered = threading.Event()

    def fake_experiment(config_name, step, argv):
        trained.append(threading.current_thread().name)
        entered.set()
        time.sleep(1.0)  # long enough for the other pipeline to arrive and wait
        ckpt = tmp_path / f"run_{len(trained)}.ckpt"
        ckpt.write_bytes(b"weights")
        return {"checkpoint": str(ckpt)}

    monkeypatch.setattr(pipeline, "experiment", fake_experiment)
    monkeypatch.setattr(pipeline, "parse_config", lambda files, bindings: None)
    settings = {"steps": {"teacher": ([str(step_file)], [])}, "setup": None,
                "outputs": {"teacher": str(output)}}
    monkeypatch.setattr(pipeline, "pipeline_settings", lambda: settings)
    results = {}

    def run(name):
        results[name] = pipeline.run_pipeline("demo", [])

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    first.join(60)
    second.join(60)
    assert trained == ["first"]  # the step ran once
    assert output.read_bytes() == b"weights"
    assert results["second"]["steps"]["teacher"]["status"] == "skipped"
    assert "waiting for another process that is making" in capsys.readouterr().out
    gin.clear_config()


def test_an_output_for_a_step_that_trains_nothing_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "experiment", lambda config_name, step, argv: {"status": "finished"})
    monkeypatch.setattr(pipeline, "parse_config", lambda files, bindings: None)
    monkeypatch.setattr(pipeline, "pipeline_settings", lambda: {
        "steps": {"evaluate": (["x.gin"], [])}, "setup": None,
        "outputs": {"evaluate": str(tmp_path / "kept.ckpt")}})
    import pytest

    with pytest.raises(ValueError, match="step 'evaluate', but that step trained no checkpoint"):
        pipeline.run_pipeline("demo", [])
    assert not (tmp_path / "kept.ckpt").exists()


def test_a_kept_output_made_with_other_bindings_is_reused_with_a_warning(tmp_path, monkeypatch,
                                                                         capsys):
    output = tmp_path / "cache" / "teacher.ckpt"
    trained = []

    def fake_experiment(config_name, step, argv):
        trained.append(step)
        ckpt = tmp_path / "run.ckpt"
        ckpt.write_bytes(b"seed-0 weights")
        return {"checkpoint": str(ckpt)}

    monkeypatch.setattr(pipeline, "experiment", fake_experiment)
    monkeypatch.setattr(pipeline, "parse_config", lambda files, bindings: None)
    monkeypatch.setattr(pipeline, "pipeline_settings", lambda: {
        "steps": {"teacher": (["step.gin"], [])}, "setup": None, "outputs": {"teacher": str(output)}})
    pipeline.run_pipeline("demo", ["demo_data.seed=0", "train.lr=0.1"])
    assert trained == ["teacher"] and (tmp_path / "cache" / "teacher.ckpt.made_with.json").is_file()
    capsys.readouterr()

    pipeline.run_pipeline("demo", ["train.lr=0.1", "demo_data.seed=0"])  # same, other order
    assert "warning" not in capsys.readouterr().out

    result = pipeline.run_pipeline("demo", ["demo_data.seed=1", "train.lr=0.1"])
    out = capsys.readouterr().out
    assert trained == ["teacher"]  # reused, not retrained
    assert result["steps"]["teacher"]["status"] == "skipped"
    assert "warning" in out and "demo_data.seed=0" in out and "demo_data.seed=1" in out
    assert "Delete it" in out and output.read_bytes() == b"seed-0 weights"


def test_a_step_is_gin_files_plus_bindings_applied_before_the_command_line(monkeypatch, capsys):
    parsed = []
    monkeypatch.setattr(pipeline, "experiment", lambda config_name, step, argv: {})
    monkeypatch.setattr(pipeline, "parse_config", lambda files, bindings: parsed.append(
        (list(files), list(bindings))))
    gin.parse_config("""pipeline.steps = {
        'flow': ['gin/demo/teacher.gin', "pretrain.modality = 'flow'", 'train.epochs = 3'],
        'all': 'gin/demo/distill.gin'}""")
    pipeline.run_pipeline("demo", ["train.epochs = 1"])
    assert parsed == [(["gin/demo/teacher.gin"],
                       ["pretrain.modality = 'flow'", "train.epochs = 3", "train.epochs = 1"]),
                      (["gin/demo/distill.gin"], ["train.epochs = 1"])]
    # each step prints the command that runs it alone
    assert ("python run.py --gin_file gin/demo/teacher.gin --gin_param "
            "\"pretrain.modality = 'flow'\" --gin_param 'train.epochs = 3'") in capsys.readouterr().out
    gin.clear_config()
    gin.parse_config("pipeline.steps = {'x': ['train.epochs = 3']}")
    import pytest

    with pytest.raises(ValueError, match="names no gin file"):
        pipeline.run_pipeline("demo", [])
    gin.clear_config()


def _fake_steps(monkeypatch, tmp_path, settings, fail=()):
    import json
    import os

    def fake_experiment(config_name, step, argv):
        if step in fail:
            raise RuntimeError(f"{step} broke")
        if step == "slow_control":
            time.sleep(1.0)
        record = tmp_path / f"{step}.json"
        record.write_text(json.dumps({"pid": os.getpid(), "end": time.time(), "start": time.time()}))
        return {"status": "finished", "pid": os.getpid()}

    monkeypatch.setattr(pipeline, "experiment", fake_experiment)
    monkeypatch.setattr(pipeline, "parse_config", lambda files, bindings: None)
    monkeypatch.setattr(pipeline, "pipeline_settings", lambda: settings)


def _lanes(steps, needs, lanes=2):
    """Settings as pipeline_settings makes them, for steps with no files or outputs."""
    order = list(steps)
    return {"steps": {s: ([f"{s}.gin"], []) for s in steps}, "setup": None, "outputs": {},
            "needs": {s: list(needs.get(s, order[:i])) for i, s in enumerate(order)},
            "lanes": lanes}


def test_lanes_run_independent_steps_side_by_side_and_a_step_after_what_it_needs(
        tmp_path, monkeypatch):
    import json
    import os

    # teacher and slow_control need nothing; student needs teacher; evaluate (not listed) all.
    settings = _lanes(["teacher", "slow_control", "student", "evaluate"],
                      {"teacher": [], "slow_control": [], "student": ["teacher"]})
    _fake_steps(monkeypatch, tmp_path, settings)
    out = pipeline.run_pipeline("demo", [])
    records = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in settings["steps"]}
    assert len({r["pid"] for r in records.values()} | {os.getpid()}) == 5  # a process per step
    # The student did not wait for the slow control, only for the teacher; the evaluation waited
    # for every step.
    assert records["teacher"]["end"] <= records["student"]["start"]
    assert records["student"]["end"] < records["slow_control"]["end"]
    assert max(r["end"] for s, r in records.items() if s != "evaluate") <= records["evaluate"]["start"]
    assert out["steps"]["slow_control"]["pid"] == records["slow_control"]["pid"]
    assert list(out["seconds"]) == list(settings["steps"])
    gin.clear_config()


def test_one_lane_runs_the_steps_in_order_in_this_process(tmp_path, monkeypatch):
    import json
    import os

    settings = _lanes(["slow_control", "teacher"], {"teacher": []}, lanes=1)
    _fake_steps(monkeypatch, tmp_path, settings)
    pipeline.run_pipeline("demo", [])
    records = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in settings["steps"]}
    assert records["slow_control"]["pid"] == records["teacher"]["pid"] == os.getpid()
    assert records["slow_control"]["end"] <= records["teacher"]["start"]
    gin.clear_config()


def test_a_failed_step_in_a_lane_is_raised_by_name_and_its_dependants_never_start(tmp_path,
                                                                                  monkeypatch):
    import pytest

    settings = _lanes(["control", "teacher", "evaluate"], {"control": [], "teacher": []})
    _fake_steps(monkeypatch, tmp_path, settings, fail=("control",))
    with pytest.raises(RuntimeError, match="step 'control' failed in its process(.|\n)*control broke"):
        pipeline.run_pipeline("demo", [])
    assert not (tmp_path / "evaluate.json").exists()
    gin.clear_config()


def test_needs_must_name_earlier_steps_and_lanes_a_positive_integer():
    import pytest

    with pytest.raises(ValueError, match="do not come before"):
        pipeline.pipeline_settings(steps={"a": "a.gin", "b": "b.gin"}, needs={"a": ["b"]})
    with pytest.raises(ValueError, match="not steps"):
        pipeline.pipeline_settings(steps={"a": "a.gin"}, needs={"a": ["zzz"]})
    with pytest.raises(ValueError, match="give a list"):
        pipeline.pipeline_settings(steps={"a": "a.gin", "b": "b.gin"}, needs={"b": "a"})
    with pytest.raises(ValueError, match="positive integer"):
        pipeline.pipeline_settings(steps={"a": "a.gin"}, lanes=0)
    settings = pipeline.pipeline_settings(steps={"a": "a.gin", "b": "b.gin", "c": "c.gin"},
                                          needs={"b": []})
    assert settings["needs"] == {"a": [], "b": [], "c": ["a", "b"]}  # unlisted: every earlier step
    gin.clear_config()


def test_the_retired_background_setting_names_its_replacement():
    import pytest

    from mmdistill.config import ConfigError, parse_config
    with pytest.raises(ConfigError, match="pipeline.needs"):
        parse_config([], ["pipeline.background = {'a': 'b'}"])
    gin.clear_config()


def test_a_binding_in_the_pipeline_file_that_no_step_sees_is_refused(tmp_path, monkeypatch):
    """Steps are parsed from their own files: a macro or binding written in the pipeline's file
    (not pipeline.*, not its setup, not a macro the file uses) would be ignored by every step."""
    import glob

    import pytest

    from mmdistill.config import REPO_ROOT

    pipeline_file = tmp_path / "tries.gin"
    pipeline_file.write_text("include 'gin/demo/common.gin'\n"
                             "EVAL_CLIPS = 'val.json'\n"          # the steps' common.gin sets it
                             "STEP = 'gin/demo/teacher.gin'\n"    # used below: fine
                             "pipeline.steps = {'a': [%STEP]}\n"
                             "train.lr = 1e-3\n")
    with pytest.raises(ValueError, match=r"binds EVAL_CLIPS, train\.lr, which no step"):
        pipeline.check_pipeline_file(pipeline_file)
    # run_pipeline checks the file before its setup or any step runs.
    ran = []
    monkeypatch.setattr(pipeline, "pipeline_settings", lambda: {
        "steps": {"a": (["a.gin"], [])}, "setup": lambda: ran.append("setup"), "outputs": {}})
    with pytest.raises(ValueError, match="no step of the pipeline sees"):
        pipeline.run_pipeline("tries", [], gin_files=[str(pipeline_file)])
    assert not ran
    # Every shipped pipeline file passes.
    shipped = [f for f in glob.glob(str(REPO_ROOT / "gin/**/*.gin"), recursive=True)
               if "pipeline.steps" in open(f).read()]
    assert len(shipped) >= 6
    for path in shipped:
        pipeline.check_pipeline_file(path)
    gin.clear_config()
