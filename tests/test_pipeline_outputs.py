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
