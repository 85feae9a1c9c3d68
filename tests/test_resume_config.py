"""A resume whose bindings differ from its checkpoint's is refused unless allowed by name, and
every segment's operative config is kept (issue 25, class 2)."""
import gin
import pytest

from mmdistill import experiment as exp
from mmdistill.config import parse_config
from mmdistill.train.resume_config import ResumeConfigError, config_differences
from toy_experiment import toy_train


def _run(tmp_path, *bindings):
    gin.clear_config()
    parse_config([], ["experiment.task = 'toy'", "experiment.device = 'cpu'", "experiment.name = 'r'",
                      f"experiment.output_root = '{tmp_path}'", "wandb_run.mode = 'disabled'",
                      "train.warmup_epochs = 0", "train.log_every = 1", *bindings])
    return exp.experiment(config_name="toy")


def test_a_resume_with_another_lr_is_refused_then_allowed_by_name_and_both_configs_kept(
        tmp_path, monkeypatch):
    monkeypatch.setitem(exp.TASKS, "toy", exp.Task(train=toy_train, test=None))
    first = _run(tmp_path, "train.epochs = 1", "train.lr = 0.5")
    run_dir = tmp_path.joinpath(first["run_dir"])
    (run_dir / "summary.json").unlink()  # as if it had been killed after its checkpoint
    try:
        with pytest.raises(ResumeConfigError, match=r"train.lr: 0.5 then, 0.1 now.*"
                                                    r"train.resume_may_change = \['train.lr'\]"):
            _run(tmp_path, "train.epochs = 2", "train.lr = 0.1", "experiment.resume = True")
        (run_dir / "summary.json").unlink()
        # train.epochs may change by default (a finished run's copy trained longer); lr by name.
        _run(tmp_path, "train.epochs=2", "train.lr=0.1", "experiment.resume=True",
             "train.resume_may_change = ['train.lr', 'train.epochs']")
    finally:
        gin.clear_config()
    segments = sorted(p.name for p in run_dir.glob("operative_config*.gin"))
    assert segments == ["operative_config.1.gin", "operative_config.2.gin", "operative_config.gin"]
    assert "train.lr = 0.5" in (run_dir / "operative_config.1.gin").read_text()
    assert "train.lr = 0.1" in (run_dir / "operative_config.gin").read_text()


def test_bindings_are_compared_parsed_not_as_text():
    assert config_differences("train.epochs = 1\ntrain.betas = (0.9, 0.99)",
                              "train.epochs=1\ntrain.betas = [0.9, 0.99]", "") == {}
    assert config_differences("pretrain.mask_ratio = 0.9", "pretrain.mask_ratio = 0.75", "") == {
        "pretrain.mask_ratio": (0.9, 0.75)}
    # a setting this run has not used yet is compared with what is bound now
    assert config_differences("pretrain.lambda_ce = 0.05", "", "pretrain.lambda_ce = 0.5") == {
        "pretrain.lambda_ce": (0.05, 0.5)}
