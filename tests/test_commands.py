"""The command layer (mmdistill/commands/): one run session for run.py's experiments and the eval
command, flags spelled alike, Ctrl-C and SIGTERM recorded as `interrupted` everywhere, and what a
run directory records (final losses in summary.json, the few-shot results in metrics.jsonl, a
pipeline step's own command in command.txt)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_cli import PROTOCOL, checkpoints, clips, run  # noqa: F401  (fixtures)

from mmdistill import experiment as exp
from mmdistill import pipeline
from mmdistill.commands.session import INTERRUPTED_EXIT, run_command
from mmdistill.config import parse_config

ROOT = Path(__file__).resolve().parent.parent

# The eval command in a process of its own, held inside the evaluate stage (after the run
# session began) with a line on stderr, until the test signals it.
HELD_EVAL = """
import sys, time
from pathlib import Path
import mmdistill.evaluation as evaluation

def held(*args, **kwargs):
    print("held inside the evaluation (on stderr)", file=sys.stderr, flush=True)
    (Path(sys.argv[1]) / "held").touch()
    time.sleep(120)

evaluation.run_fewshot = held
from mmdistill.eval.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_an_interrupted_eval_is_recorded_as_interrupted_with_stderr_in_its_log(
        tmp_path, clips, checkpoints, signum):
    out = tmp_path / "eval"
    argv = ["--checkpoint", f"ours={checkpoints['ours']}", "--clips", str(clips), "--out", str(out),
            *PROTOCOL]
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
           "PYTHONPATH": str(ROOT), "CI": "true"}
    # A suite started in the background (`cmd &` in a script) ignores SIGINT, and so would the
    # child; restore the default so Python turns Ctrl-C into KeyboardInterrupt as in a terminal.
    process = subprocess.Popen([sys.executable, "-c", HELD_EVAL, str(out), *argv], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "held").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the eval command never reached the evaluation"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == INTERRUPTED_EXIT, stderr
    assert "python -m mmdistill.eval: interrupted" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "KeyboardInterrupt" in summary["error"]
    log = (out / "console.log").read_text()
    assert "held inside the evaluation (on stderr)" in log  # stderr is copied too
    assert "KeyboardInterrupt" in log  # with the traceback of where it stopped
    command = (out / "command.txt").read_text().splitlines()[-1]
    assert "python -m mmdistill.eval" in command and f"ours={checkpoints['ours']}" in command


def test_the_eval_commands_metrics_file_carries_the_fewshot_results(tmp_path, clips, checkpoints,
                                                                     capsys):
    out = tmp_path / "eval"
    code, _, _ = run(["--checkpoint", f"ours={checkpoints['ours']}", "--clips", clips, "--out", out,
                      *PROTOCOL], capsys)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for setting in ("3way_1shot", "3way_2shot"):
        key = f"ours/fewshot/{setting}/acc"
        assert record["summary"][key] == summary[key]


def test_run_command_ends_a_command_as_interrupted_on_sigterm(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def command():
        signal.raise_signal(signal.SIGTERM)
        return 0

    try:
        assert run_command(command, "python -m mmdistill.prepare") == INTERRUPTED_EXIT
    finally:
        signal.signal(signal.SIGTERM, before)
    assert "python -m mmdistill.prepare: interrupted" in capsys.readouterr().err


def _parsers():
    import importlib.util

    from mmdistill.commands.data import build_parser as data_parser
    from mmdistill.eval.__main__ import build_parser as eval_parser

    spec = importlib.util.spec_from_file_location("run_cli_flags", ROOT / "run.py")
    run_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_py)
    base = {"eval": ["--checkpoint", "x", "--out", "o"]}
    return {"run.py": (run_py.build_parser(), []), "data check": (data_parser(), ["check"]),
            "eval": (eval_parser(), base["eval"])}


@pytest.mark.parametrize("command", ["run.py", "data check", "eval"])
def test_gin_flags_are_spelled_alike_in_every_command(command):
    parser, required = _parsers()[command]
    for file_flag, param_flag in (("--gin_file", "--gin_param"), ("--gin-file", "--gin-param")):
        args = parser.parse_args([*required, file_flag, "a.gin", param_flag, "x.y = 1",
                                  param_flag, "x.z = 2"])
        assert args.gin_file == ["a.gin"] and args.gin_param == ["x.y = 1", "x.z = 2"]


def test_the_data_commands_other_flags_take_a_dash_too():
    from mmdistill.commands.data import build_parser

    parser = build_parser()
    for flag in ("--max_clips", "--max-clips"):
        assert parser.parse_args(["stats", flag, "7"]).max_clips == 7
    args = parser.parse_args(["cache", "--cache-dir", "c", "--num-workers", "2"])
    assert (args.cache_dir, args.num_workers) == ("c", 2)


def test_a_training_runs_summary_has_its_final_losses(tmp_path, monkeypatch):
    import toy_experiment

    monkeypatch.setitem(exp.TASKS, "toy", exp.Task(train=toy_experiment.toy_train, test=None))
    parse_config([], ["experiment.task = 'toy'", "experiment.device = 'cpu'",
                      f"experiment.output_root = '{tmp_path}'", "wandb_run.mode = 'disabled'",
                      "train.epochs = 2", "train.warmup_epochs = 0", "train.lr = 0.5",
                      "train.log_every = 2", "toy_task.clips = 8"], finalize=False)
    summary = exp.experiment(config_name="toy", argv=["toy"])
    run_dir = Path(summary["run_dir"])
    saved = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last_epoch = [r for r in records if "train/epoch_loss" in r][-1]
    assert saved["status"] == "finished" and saved["epochs"] == 2
    assert saved["train/epoch_loss"] == last_epoch["train/epoch_loss"]
    assert records[-1]["summary"]["train/epoch_loss"] == last_epoch["train/epoch_loss"]


def test_a_pipeline_steps_command_is_its_own(tmp_path, monkeypatch):
    """Each step's command.txt holds the command that runs that step alone: its own gin files,
    its own bindings and the pipeline's bindings, not the pipeline's command."""
    steps = {"teacher": (["gin/demo/teacher.gin"], ["pretrain.modality = 'rgb'"]),
             "student": (["gin/demo/distill.gin", "x.gin"], [])}
    commands = {}

    def fake_experiment(config_name, step, argv):
        commands[step] = argv
        return {"status": "finished"}

    monkeypatch.setattr(pipeline, "experiment", fake_experiment)
    monkeypatch.setattr(pipeline, "parse_config", lambda files, bindings: None)
    monkeypatch.setattr(pipeline, "pipeline_settings",
                        lambda: {"steps": steps, "setup": None, "outputs": {}})
    pipeline.run_pipeline("demo", ["train.epochs = 1"],
                          argv=["run.py", "--gin_file", "gin/demo.gin", "--gin_param",
                                "train.epochs = 1"])
    assert commands == {
        "teacher": ["run.py", "--gin_file", "gin/demo/teacher.gin",
                    "--gin_param", "pretrain.modality = 'rgb'", "--gin_param", "train.epochs = 1"],
        "student": ["run.py", "--gin_file", "gin/demo/distill.gin", "--gin_file", "x.gin",
                    "--gin_param", "train.epochs = 1"]}
