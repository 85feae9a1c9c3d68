"""The runner spine: CLI flags, gin composition, run directories, tracking."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gin
import pytest

from mmdistill import experiment as exp
from mmdistill.config import ConfigError, flatten_config, parse_config, sweep_args_to_bindings
from mmdistill.experiment import Task, experiment
from mmdistill.tracking import FanoutLogger, MemoryLogger, TrackingError, WandbLogger

ROOT = Path(__file__).resolve().parent.parent


def import_run_configurables():
    """What run.py imports before it parses, so the shipped gin files parse here as they do there."""
    spec = importlib.util.spec_from_file_location("run_cli_module", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.import_configurables()


def run_cli(*args, cwd=ROOT, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # no parent W&B service
    env["CI"] = "true"
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_help_explains_flags_with_example():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "--gin_file" in out.stdout and "--gin_param" in out.stdout
    assert "python run.py --gin_file gin/" in out.stdout


@pytest.mark.parametrize("binding, named", [("trian.lr = 1e-3", "trian"),
                                            ("experiment.nmae = 'x'", "nmae")])
def test_typo_in_binding_fails_fast_with_exit_2(binding, named, tmp_path):
    start = time.monotonic()
    out = run_cli("--gin_param", binding, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert binding in out.stderr and named in out.stderr
    assert not (tmp_path / "output").exists(), "no work may start before the config parses"
    assert time.monotonic() - start < 60


def test_typo_in_gin_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("experiment.sed = 3\n")
    out = run_cli("--gin_file", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert str(bad) in out.stderr and "sed" in out.stderr


def test_missing_gin_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="gin file not found"):
        parse_config([tmp_path / "nope.gin"], [])


def test_files_compose_in_order_and_params_override(tmp_path):
    base = tmp_path / "base.gin"
    base.write_text("experiment.seed = 1\nexperiment.name = 'base'\n")
    top = tmp_path / "top.gin"
    top.write_text(f"include '{base}'\nexperiment.seed = 2\n")
    other = tmp_path / "other.gin"
    other.write_text("experiment.seed = 3\n")
    parse_config([top], [], finalize=False)
    assert gin.query_parameter("experiment.seed") == 2
    assert gin.query_parameter("experiment.name") == "base"
    gin.clear_config()
    parse_config([top, other], ["experiment.name = 'cli'"], finalize=False)
    assert gin.query_parameter("experiment.seed") == 3
    assert gin.query_parameter("experiment.name") == "cli"


def test_sweep_arguments_become_bindings():
    assert sweep_args_to_bindings(["--train.lr=0.001", "--experiment.name=foo"]) == [
        "train.lr = 0.001", "experiment.name = 'foo'"]
    with pytest.raises(ConfigError, match="--bogus"):
        sweep_args_to_bindings(["--bogus"])


@gin.configurable("toy_stage")
def toy_stage(ctx, steps=3, lr=0.5, note="hello"):
    """A stand-in stage: logs a falling loss, like a real stage would."""
    ctx.save_operative_config()
    for step in range(steps):
        ctx.logger.log({"train/loss": lr / (step + 1)}, step=step)
    path = ctx.checkpoints_dir / "last.ckpt"
    path.write_text("weights")
    return path


TOY = Task(train=lambda ctx, resume: toy_stage(ctx),
           test=lambda ctx, ckpt: {"toy/acc": 0.75, "toy/ckpt": str(ckpt)})


def add_memory_logger(monkeypatch) -> MemoryLogger:
    """Every logger experiment() makes also feeds the returned MemoryLogger."""
    memory = MemoryLogger()
    make_logger = exp.make_logger

    def with_memory(*args):
        logger, run_id = make_logger(*args)
        return FanoutLogger(logger, memory), run_id

    monkeypatch.setattr(exp, "make_logger", with_memory)
    return memory


def test_run_creates_the_run_dir_layout(tmp_path, monkeypatch):
    monkeypatch.setitem(exp.TASKS, "toy", TOY)
    parse_config([], ["toy_stage.steps = 4", "toy_stage.note = 'x y'",
                      f"experiment.output_root = '{tmp_path / 'out'}'", "experiment.task = 'toy'",
                      "experiment.test = True"], finalize=False)
    memory = add_memory_logger(monkeypatch)
    summary = experiment(config_name="unit", argv=["run.py", "--x"])
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent.parent == tmp_path / "out"
    assert run_dir.name.endswith("_unit")
    for name in ["operative_config.gin", "checkpoints", "metrics.jsonl", "summary.json",
                 "console.log", "wandb", "command.txt", "environment.json", "wandb_run_id"]:
        assert (run_dir / name).exists(), name
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "summary" not in l] == [0, 1, 2, 3]
    # the final numbers too, at the last step, so runs compare without W&B
    assert lines[-1]["step"] == 3 and lines[-1]["summary"]["toy/acc"] == 0.75
    assert memory.series("train/loss")[0] == (0, 0.5)
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["toy/acc"] == 0.75 and saved["status"] == "finished"
    assert saved["toy/ckpt"].endswith("last.ckpt")
    assert "run directory" in (run_dir / "console.log").read_text()
    # W&B offline run with our keys in its files
    offline = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1
    # W&B's service process may still be flushing the file when finish() returns on a busy machine.
    deadline = time.monotonic() + 60
    while b"train/loss" not in offline[0].read_bytes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b"train/loss" in offline[0].read_bytes()
    # operative config re-parses to the same bindings, and the flat config holds every one
    text = (run_dir / "operative_config.gin").read_text()
    flat = flatten_config(text)
    assert flat["toy_stage.steps"] == 4 and flat["toy_stage.note"] == "x y"
    assert flat["experiment.task"] == "toy"
    gin.clear_config()
    gin.parse_config(text)
    assert flatten_config(gin.config_str()) == flat


def test_a_second_run_never_reuses_a_directory(tmp_path, monkeypatch):
    monkeypatch.setitem(exp.TASKS, "toy", TOY)
    parse_config([], [f"experiment.output_root = '{tmp_path}'", "experiment.task = 'toy'",
                      "wandb_run.mode = 'disabled'"], finalize=False)
    a = experiment(config_name="same")["run_dir"]
    b = experiment(config_name="same")["run_dir"]
    assert a != b and (Path(a) / "checkpoints" / "last.ckpt").read_text() == "weights"


def test_failed_stage_still_writes_summary_and_finishes(tmp_path, monkeypatch):
    def boom(ctx, resume):
        raise RuntimeError("stage exploded")

    monkeypatch.setitem(exp.TASKS, "boom", Task(train=boom, test=None))
    parse_config([], [f"experiment.output_root = '{tmp_path}'", "experiment.task = 'boom'"],
                 finalize=False)
    memory = add_memory_logger(monkeypatch)
    with pytest.raises(RuntimeError, match="exploded"):
        experiment(config_name="boom")
    (run_dir,) = tmp_path.glob("*/*_boom")
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["status"] == "failed" and "exploded" in saved["error"]
    assert memory.finished


def test_fp16_on_cpu_is_refused_with_advice():
    with pytest.raises(ValueError, match="bf16"):
        exp.resolve_precision("fp16", exp.resolve_device("cpu"))


def test_online_wandb_without_key_fails_fast_with_offline_hint(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    start = time.monotonic()
    with pytest.raises(TrackingError, match="offline"):
        WandbLogger(tmp_path, project="p", entity=None, group=None, job_type="t", name="n",
                    tags=[], config={}, mode="online", run_id=None, init_timeout=15)
    assert time.monotonic() - start < 60


def test_every_shipped_gin_file_parses():
    import_run_configurables()
    files = sorted((ROOT / "gin").rglob("*.gin"))
    assert len(files) >= 10
    for path in files:
        gin.clear_config()
        parse_config([path], [], finalize=False)


def test_sweep_files_name_real_bindings():
    import yaml

    import_run_configurables()
    for path in (ROOT / "sweeps").glob("*.yaml"):
        sweep = yaml.safe_load(path.read_text())
        gin_file = sweep["command"][sweep["command"].index("--gin_file") + 1]
        args = [f"--{name}={spec['values'][0]}" for name, spec in sweep["parameters"].items()]
        gin.clear_config()
        parse_config([ROOT / gin_file], sweep_args_to_bindings(args), finalize=False)
        for name, spec in sweep["parameters"].items():
            assert gin.query_parameter(name) == spec["values"][0]


def test_ckpt_path_with_training_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(exp.TASKS, "toy", TOY)
    parse_config([], [f"experiment.output_root = '{tmp_path}'", "experiment.task = 'toy'",
                      "experiment.test = True", "experiment.ckpt_path = 'old.ckpt'"],
                 finalize=False)
    with pytest.raises(ValueError, match="experiment.resume"):
        experiment(config_name="x")


def test_resume_finds_exactly_this_name_and_never_a_finished_run(tmp_path):
    from mmdistill import rundir

    def make(day, name, status=None):
        run = tmp_path / day / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_text("x")
        if status:
            (run / "summary.json").write_text(json.dumps({"status": status}))
        return run

    mine = make("2026-01-01", "10-00-00_distill")
    make("2026-01-02", "11-00-00_demo_distill")  # newer, but another experiment
    make("2026-01-02", "12-00-00_distill_other")
    assert rundir.resolve_resume(True, tmp_path, "distill") == (mine, mine / "checkpoints/last.ckpt")
    done = make("2026-01-03", "09-00-00_distill-1", status="finished")
    with pytest.raises(ValueError, match="finished already"):
        rundir.resolve_resume(True, tmp_path, "distill")
    with pytest.raises(ValueError, match="finished already"):
        rundir.resolve_resume(str(done), tmp_path, "distill")


def test_unquoted_string_binding_gets_the_quoting_hint():
    with pytest.raises(ConfigError, match="Strings need quotes"):
        parse_config([], ["experiment.name = foo bar"], finalize=False)


def test_no_arguments_prints_usage_and_exits_2(tmp_path):
    out = run_cli(cwd=tmp_path)
    assert out.returncode == 2
    assert "usage: run.py" in out.stderr and "--gin_file" in out.stderr
    assert "nothing to run" in out.stderr
    assert not (tmp_path / "output").exists(), "no run may start without a gin file or binding"


def test_unknown_task_lists_the_known_ones(tmp_path):
    parse_config([], [f"experiment.output_root = '{tmp_path}'", "experiment.task = 'distil'"],
                 finalize=False)
    with pytest.raises(ValueError, match=r"'distil' is not a known task; known: \['distill', "
                                         r"'evaluate', 'pretrain'\]"):
        experiment(config_name="x")
    assert not any(tmp_path.iterdir())


def test_wandb_is_imported_once_before_the_lanes_fork_without_a_thread():
    """The pipeline imports W&B (and the launch-inputs module each run imports as it starts) in the
    parent, so forked steps inherit it; importing must start no thread, or forking would be unsafe."""
    code = ("import sys, threading\n"
            "from mmdistill.tracking import import_wandb_once\n"
            "import_wandb_once()\n"
            "print(threading.active_count(), 'wandb.sdk.launch.inputs.internal' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True"]
