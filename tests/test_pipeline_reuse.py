"""A kept pipeline output is keyed by the step's parsed operative config: another config is
refused, a missing record is refused, a binding the step never uses does not count, and every
--gin_file after the pipeline's reaches the steps (issue 25, class 3)."""
import json

import gin
import pytest

from mmdistill import pipeline
from mmdistill.pipeline_record import KeptOutputError


@gin.configurable("reuse_step")
def step_settings(epochs=1, lr=0.1):
    return epochs, lr


@gin.configurable("reuse_other")
def other_settings(x=0):
    return x


@pytest.fixture
def setup(tmp_path, monkeypatch):
    output = tmp_path / "cache" / "teacher.ckpt"
    step_file = tmp_path / "step.gin"
    made = []

    def fake_experiment(config_name, step, argv):
        made.append(step_settings())  # the step uses reuse_step.*, never reuse_other.*
        ckpt = tmp_path / f"run{len(made)}.ckpt"
        ckpt.write_bytes(b"weights")
        return {"checkpoint": str(ckpt)}

    monkeypatch.setattr(pipeline, "experiment", fake_experiment)
    monkeypatch.setattr(pipeline, "pipeline_settings", lambda: {
        "steps": {"teacher": ([str(step_file)], [])}, "setup": None, "outputs": {"teacher": str(output)}})
    yield output, step_file, made
    gin.clear_config()


def test_a_kept_output_is_reused_only_for_the_config_that_made_it(setup, tmp_path):
    output, step_file, made = setup
    step_file.write_text("reuse_step.epochs = 1\n")
    pipeline.run_pipeline("demo", [])
    assert made == [(1, 0.1)]
    step_file.write_text("reuse_step.epochs=1\nreuse_other.x = 5\n")  # same parsed; unused setting
    assert pipeline.run_pipeline("demo", ["reuse_other.x=7"])["steps"]["teacher"]["status"] == "skipped"
    step_file.write_text("reuse_step.epochs = 2\n")  # the step's file changed
    with pytest.raises(KeptOutputError, match="reuse_step.epochs: 1 then, 2 now"):
        pipeline.run_pipeline("demo", [])
    step_file.write_text("reuse_step.epochs = 1\n")
    with pytest.raises(KeptOutputError, match="reuse_step.lr: 0.1 then, 0.2 now"):
        pipeline.run_pipeline("demo", ["reuse_step.lr = 0.2"])
    (output.with_name(output.name + ".made_with.json")).unlink()
    with pytest.raises(KeptOutputError, match="made_with.json beside it.*does not"):
        pipeline.run_pipeline("demo", [])
    assert len(made) == 1 and output.read_bytes() == b"weights"


def test_every_further_gin_file_reaches_the_steps(setup, tmp_path):
    output, step_file, made = setup
    step_file.write_text("reuse_step.epochs = 20\n")
    extra = tmp_path / "quick.gin"
    extra.write_text("reuse_step.epochs = 1\n")
    pipeline.run_pipeline("demo", [], gin_files=[str(tmp_path / "pipeline.gin"), str(extra)])
    assert made == [(1, 0.1)]
    record = json.loads(output.with_name(output.name + ".made_with.json").read_text())
    assert record["operative"]["reuse_step.epochs"] == 1
    with pytest.raises(KeptOutputError, match="reuse_step.epochs: 1 then, 20 now"):
        pipeline.run_pipeline("demo", [])  # without the extra file the step is another one


def test_an_unscoped_binding_reaches_the_scoped_setting_the_step_used(setup, tmp_path):
    output, step_file, made = setup
    step_file.write_text("reuse_step.epochs = 1\n")

    def scoped_experiment(config_name, step, argv):
        with gin.config_scope("student"):
            made.append(step_settings())
        ckpt = tmp_path / "run.ckpt"
        ckpt.write_bytes(b"weights")
        return {"checkpoint": str(ckpt)}

    pipeline.experiment = scoped_experiment  # restored by monkeypatch (the fixture's setattr)
    pipeline.run_pipeline("demo", [])
    step_file.write_text("reuse_step.epochs = 3\n")
    with pytest.raises(KeptOutputError, match="student/reuse_step.epochs: 1 then, 3 now"):
        pipeline.run_pipeline("demo", [])
